"""A headless Chromium driven over the Chrome DevTools Protocol on a pipe (--remote-debugging-pipe).

Standard library only: no browser driver, no websocket package, no version coupling beyond the
handful of stable CDP methods used here (Target, Page, Runtime, Log, Network, Emulation). Used by
tests/test_dashboard.py, the report.html tests (open_static_page), and to take the README's dashboard
screenshot:

    python tests/browser.py dashboards/site/index.html dashboards/dashboard.png
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# This machine has no network: without these, Chromium waits on network services at start-up.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


class Browser:
    """One Chromium process and one page. Every event is kept in `events`; `errors()` lists the
    console errors, uncaught exceptions and failed loads among them."""

    def __init__(self, executable: str, width: int = 1400, height: int = 900, timeout_s: float = 30):
        self.timeout_s, self.width, self.height = timeout_s, width, height
        self.profile = tempfile.mkdtemp(prefix="harness-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds():  # in the child: Chromium reads commands on fd 3 and writes replies on fd 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen([executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     preexec_fn=wire_fds, close_fds=False, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.events: list[dict] = []
        self._replies: queue.Queue = queue.Queue()
        self._next_id = 0
        self._session = None
        threading.Thread(target=self._read, daemon=True).start()
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._from_browser, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                for raw in messages:
                    message = json.loads(raw)
                    (self._replies.put if "id" in message else self.events.append)(message)

    def send(self, method: str, **params):
        """Send one command (to the page once attached) and return its result; raise on a CDP error."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self._session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._replies.get(timeout=max(0.01, deadline - time.monotonic()))
            if reply["id"] == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        seen = len(self.events)
        self.send("Page.navigate", url=url)
        self.wait_for(lambda: any(e.get("method") == "Page.loadEventFired" for e in self.events[seen:]), "page load")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, ready, what: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {self.timeout_s} s")
            time.sleep(0.05)

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('exception', {}).get('description') or p['exceptionDetails']['text']}")
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")
            elif method == "Network.loadingFailed":
                out.append(f"load failed: {p.get('errorText')}")
        return out

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        if full_page:
            height = int(self.evaluate("document.documentElement.scrollHeight"))
            self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=height, deviceScaleFactor=1,
                      mobile=False)
            time.sleep(0.5)  # let responsive charts re-layout to the new viewport
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001 - the process is stopped below either way
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# Every plotly chart on the page: its div id, and per trace the number of points plotly computed.
PLOTLY_CHARTS = """Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
  id: gd.id, traces: (gd.data || []).length,
  points: (gd.calcdata || []).map(cd => cd.filter(p => p && (Number.isFinite(p.y) || Number.isFinite(p.s))).length)}))"""


def open_static_page(executable: str, page: Path) -> dict:
    """Load a page that runs no script (report.html) from file://: its errors, every URL it requested,
    its images (alt text and decoded width: 0 for one that did not decode) and its text."""
    with Browser(executable) as b:
        b.open(Path(page).resolve().as_uri())
        images = b.evaluate("Array.from(document.images).map(i => [i.alt, i.complete ? i.naturalWidth : 0])")
        text = b.evaluate("document.body.innerText")
        return {"errors": b.errors(), "urls": b.requested_urls(), "images": images, "text": text}


def main(argv: list[str]) -> int:
    page, png = Path(argv[0]).resolve(), Path(argv[1])
    chromium = find_chromium()
    if chromium is None:
        print("chromium not found (apt-get install chromium)", file=sys.stderr)
        return 2
    with Browser(chromium) as b:
        b.open(page.as_uri())
        b.wait_for(lambda: b.evaluate("Array.from(document.querySelectorAll('.plotly-graph-div')).every("
                                      "gd => gd._fullLayout && gd.calcdata)"), "rendered charts")
        charts = b.evaluate(PLOTLY_CHARTS)
        b.screenshot(png)
    print(f"{len(charts)} charts, errors: {b.errors() or 'none'} -> {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
