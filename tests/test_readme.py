"""The README as a newcomer follows it: its links lead somewhere, its curl walkthrough works in order with
no network, and report.py says what is wrong with a folder it cannot read."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
README_SECRET = "change-me-to-a-long-secret"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def code_block_after(heading: str) -> str:
    section = README.split(heading, 1)[1]
    return section.split("```bash", 1)[1].split("```", 1)[0]


def test_every_internal_link_points_to_a_heading() -> None:
    anchors = {slug(line.lstrip("#")) for line in README.splitlines() if line.startswith("#")}
    links = re.findall(r"\]\(#([^)]+)\)", README)
    assert links and not [link for link in links if link not in anchors]


def test_the_top_has_exactly_the_two_set_up_commands() -> None:
    block = README.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert commands == [
        "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt && "
        f"WEBHOOK_SECRET_KEY={README_SECRET} python app.py",
        "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt && python -m pytest"]
    assert "HOST=127.0.0.1" in README and "two to three minutes" in README


def test_the_curl_walkthrough_works_in_order_offline(start_bot) -> None:
    """Each curl of 'Try it with curl', in order, against a paper bot with no network and the README's secret."""
    bot = start_bot("paper", webhook_secret_key=README_SECRET)
    block = code_block_after("## Try it with curl")
    bodies = [json.loads(body) for body in re.findall(r"-d '(\{.*?\})'", block, flags=re.S)]
    assert [body["action"] for body in bodies] == ["buy", "sell"]
    for body in bodies:
        answer = bot.http.post("/webhook", json=body).json()
        assert answer["decision"] == "ACCEPTED" and answer["trade"]["status"] == "FILLED", answer
    assert "Authorization: Bearer change-me-to-a-long-secret" in block
    assert bot.http.get("/status", headers={"Authorization": f"Bearer {README_SECRET}"}).status_code == 200
    assert "sed 's/YOUR_WEBHOOK_SECRET_KEY/change-me-to-a-long-secret/'" in block
    example = bot.http.get("/example").text.replace("YOUR_WEBHOOK_SECRET_KEY", README_SECRET)
    answer = bot.http.post("/webhook", content=example, headers={"Content-Type": "application/json"}).json()
    assert answer["decision"] == "ACCEPTED" and answer["trade"]["status"] == "FILLED", answer


@pytest.mark.parametrize("make, problem", [
    (lambda tmp: tmp / "missing", "no folder"),
    (lambda tmp: tmp, "no trades.csv in"),
])
def test_report_says_what_is_wrong_with_the_folder_and_fails(tmp_path: Path, make, problem: str) -> None:
    run = subprocess.run([sys.executable, str(ROOT / "report.py"), str(make(tmp_path))], capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 2 and problem in run.stderr and run.stdout == ""


def test_the_examples_from_another_bot_trade_with_the_default_settings(start_bot) -> None:
    """Each message of 'Examples that work', as TradingView would fill its placeholders, buys in paper mode."""
    section = README.split("### Examples that work", 1)[1].split("\nText messages are", 1)[0]
    messages = re.findall(r"```(?:json|text)\n(.*?)```", section, flags=re.S)
    values = {"{{ticker}}": "BTCUSDT", "{{strategy.order.action}}": "buy", "{{strategy.order.contracts}}": "0.0002",
              "{{strategy.order.price}}": "50000", "{{strategy.position_size}}": "0.0002", "{{close}}": "50000",
              "{{timenow}}": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert len(messages) == 4
    bot = start_bot("paper", webhook_secret_key=README_SECRET, cooldown_seconds=0, max_open_trades=4)
    for message in messages:
        for placeholder, value in values.items():
            message = message.replace(placeholder, value)
        message = message.replace("YOUR_WEBHOOK_SECRET_KEY", README_SECRET)
        message = message.replace("buy BTCUSDT", "buy BTCUSDT price=50000")
        answer = bot.http.post("/webhook", content=message, headers={"Content-Type": "text/plain"}).json()
        assert answer.get("decision") == "ACCEPTED" and answer["trade"]["status"] == "FILLED", (message, answer)
