"""`dlaas-tui serve` in a real headless Chromium: the token guards the page and the websocket, a tab
gets its own app that shows the runs table and opens a log from keys, and closing the tab ends that
app while the runs go on. Screenshots go to .test-artifacts/serve/ (DLAAS_TEST_ARTIFACTS moves it)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .local_helpers import manifest, seed_home, stop_everything, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
TOKEN = "test-token-4f2a9c"
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]")

# Records every frame the page's websocket receives, so the test reads what the browser was sent.
RECORDER = """
(() => {
  const Native = window.WebSocket;
  window.__dlaas = [];
  const decoder = new TextDecoder();
  window.WebSocket = function (url, protocols) {
    const ws = protocols === undefined ? new Native(url) : new Native(url, protocols);
    ws.addEventListener('message', (ev) => {
      if (typeof ev.data === 'string') { window.__dlaas.push(ev.data); }
      else if (ev.data instanceof ArrayBuffer) { window.__dlaas.push(decoder.decode(ev.data)); }
      else if (ev.data && ev.data.arrayBuffer) { ev.data.arrayBuffer().then((b) => window.__dlaas.push(decoder.decode(b))); }
    });
    return ws;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
})();
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _artifacts() -> Path:
    folder = Path(os.environ.get("DLAAS_TEST_ARTIFACTS", REPO / ".test-artifacts")) / "serve"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (the server's app processes)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _descendants(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        for child in _children(todo.pop()):
            seen.append(child)
            todo.append(child)
    return seen


@pytest.fixture
def server(dlaas_home, tmp_path, cli):
    seed_home(dlaas_home, "[profiles.local]\ncpu_slots = 1\n")
    done = cli("submit", str(manifest(tmp_path, "served-run")), "--json")
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)[0]["id"]
    assert cli("wait", run_id, "--timeout", "120").returncode == 0
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dlaas_tui", "serve", "--port", str(port), "--token", TOKEN],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        banner = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/?token={TOKEN}" in banner, banner
        wait_for(lambda: _listening(port))
        yield {"port": port, "pid": proc.pid, "run_id": run_id}
    finally:
        for pid in _descendants(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        stop_everything(dlaas_home)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("chromium and chromedriver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,860"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORDER})
        yield driver
    finally:
        driver.quit()


def _screen_text(driver) -> str:
    frames = driver.execute_script("return window.__dlaas || []")
    return ANSI.sub("", "".join(frames))


def test_without_the_token_nothing_is_served(server, browser):
    base = f"http://127.0.0.1:{server['port']}"
    browser.get(base + "/")
    assert "needs the token" in browser.page_source
    browser.get(base + "/?token=wrong")
    assert "needs the token" in browser.page_source
    browser.save_screenshot(str(_artifacts() / "refused.png"))
    import websocket  # websocket-client, which selenium brings

    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"ws://127.0.0.1:{server['port']}/ws", timeout=10)
    assert refused.value.status_code == 403
    assert _children(server["pid"]) == []  # no app was started for a refused visitor


def test_a_tab_shows_the_runs_opens_a_log_and_closing_it_ends_its_app(server, browser, cli):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    port, run_id = server["port"], server["run_id"]
    browser.get(f"http://127.0.0.1:{port}/?token={TOKEN}")
    wait_for(lambda: "served-run" in _screen_text(browser), interval=0.2)
    assert len(_children(server["pid"])) == 1  # this tab's own app
    browser.save_screenshot(str(_artifacts() / "runs.png"))

    terminal = browser.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
    terminal.click()
    ActionChains(browser).send_keys("l").perform()  # the selected (only) run's log
    wait_for(lambda: "epoch=3" in _screen_text(browser), interval=0.2)
    browser.save_screenshot(str(_artifacts() / "log.png"))

    browser.get("about:blank")  # the tab leaves: its websocket closes, and its app with it
    wait_for(lambda: _descendants(server["pid"]) == [], interval=0.2)
    runs = json.loads(cli("runs", "--json").stdout)
    assert [(r["id"], r["state"]) for r in runs] == [(run_id, "COMPLETED")]


def test_a_taken_port_and_the_help_say_what_to_do(cli):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = cli("serve", "--port", str(port))
    assert res.returncode == 2 and f"port {port} on 127.0.0.1 is taken" in res.stderr
    helped = cli("serve", "--help")
    assert helped.returncode == 0 and "ssh -L" in helped.stdout and "token" in helped.stdout
