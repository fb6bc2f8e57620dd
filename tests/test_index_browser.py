"""The figures' index in a real browser: headless Chromium (the system's package) renders index.html at 1280 px.

Every image must load (decoded, non-zero natural width), no element may reach past the right edge of the
window (no horizontal overflow), and a screenshot of the page is kept as the test's artifact (under
``PERFEDAVG_ARTIFACTS`` when set, else ``perfedavg-artifacts`` in the system's temporary folder, outside the
repository and outside pytest's rotated temporary folders; its path is printed).

Skipped where Chromium is not installed; under CI (``CI`` set, as ``.ci/run`` does, which installs it) its
absence is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

#: the Debian package's binary (``apt-get install chromium``), else whatever ``chromium`` is on the PATH
CHROMIUM = "/usr/bin/chromium"
#: the width the index is checked at (a laptop's browser window)
WIDTH_PX = 1280
#: height of the screenshot: the top of the page (verdict, report table, first figure)
SCREENSHOT_HEIGHT_PX = 2400
#: flags for a closed network and a throwaway profile: no sandbox (root in a container), no GPU, no network
#: services, nothing that reaches out
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--allow-file-access-from-files",
)
#: how long the page may take to load and run the check (virtual time, ms) and the browser to exit (s)
VIRTUAL_TIME_MS = 10_000
TIMEOUT_S = 120
#: a box may end this many CSS pixels past the window's edge (sub-pixel rounding of borders)
OVERFLOW_SLACK_PX = 1

#: appended to a copy of the index: after load, every image's state and every element reaching past the window
CHECK_SCRIPT = """
<script>
window.addEventListener('load', () => {
  const width = window.innerWidth;
  const images = [...document.images].map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}));
  const over = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.right > width + SLACK) over.push(el.tagName + ': ' + (el.textContent || '').slice(0, 60));
  }
  const result = {width, scrollWidth: document.documentElement.scrollWidth, images, over};
  const pre = document.createElement('pre');
  pre.id = 'browser-check';
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str:
    """The Chromium binary; a skip without one, a failure under CI (which installs it)."""
    found = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is missing under CI: .ci/run installs it (apt-get install -y chromium)")
    pytest.skip("chromium not installed (apt-get install -y chromium)")


def _run(binary: str, profile: Path, *args: str) -> str:
    out = subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH_PX},{SCREENSHOT_HEIGHT_PX}", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    )
    return out.stdout


def browser_check(binary: str, index: Path, work: Path) -> dict:
    """Load a copy of ``index`` (beside it, so its relative image paths resolve) with :data:`CHECK_SCRIPT`
    appended and return what the script found."""
    page = index.with_name("_browser_check.html")
    script = CHECK_SCRIPT.replace("SLACK", str(OVERFLOW_SLACK_PX))
    page.write_text(index.read_text().replace("</body>", script + "</body>"))
    try:
        dom = _run(
            binary, work / "profile-check", f"--virtual-time-budget={VIRTUAL_TIME_MS}", "--dump-dom", page.as_uri()
        )
    finally:
        page.unlink()
    found = re.search(r"<pre id=\"browser-check\">(.*?)</pre>", dom, re.S)
    assert found, "the check script did not run: " + dom[-500:]
    import html

    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    """An index from the figures that take seconds at the tiny level (the flagship and the HF error), plus one
    that is not drawn without the data (Table 1), so the page has images, the report table and a skip note."""
    from figures.build import build

    root = tmp_path_factory.mktemp("browser")
    env = os.environ.get("PERFEDAVG_DATA")
    os.environ["PERFEDAVG_DATA"] = str(root / "no-data")
    try:
        build(["flagship", "hf_delta", "table1"], root / "out", root / "runs", level="tiny", progress=False)
    finally:
        if env is None:
            os.environ.pop("PERFEDAVG_DATA")
        else:
            os.environ["PERFEDAVG_DATA"] = env
    return root / "out" / "index.html"


def test_index_renders_in_chromium_at_1280_px(small_index, tmp_path):
    binary = chromium()
    result = browser_check(binary, small_index, tmp_path)
    assert result["width"] == WIDTH_PX, result["width"]
    assert len(result["images"]) >= 2, result["images"]
    assert all(i["ok"] for i in result["images"]), [i for i in result["images"] if not i["ok"]]
    assert result["scrollWidth"] <= WIDTH_PX and not result["over"], result["over"][:10]
    artifacts = Path(os.environ.get("PERFEDAVG_ARTIFACTS", Path(tempfile.gettempdir()) / "perfedavg-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "index-1280.png"
    _run(binary, tmp_path / "profile-shot", f"--screenshot={shot}", small_index.as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_browser_check_sees_a_missing_image_and_an_overflow(small_index, tmp_path):
    """The check itself can fail: a page with a broken image and a 3000 px wide box is caught on both counts."""
    binary = chromium()
    bad = small_index.with_name("bad.html")
    bad.write_text(
        "<!doctype html><html><body><img src='no-such.png'><div style='width:3000px'>wide</div></body></html>"
    )
    result = browser_check(binary, bad, tmp_path)
    assert [i["ok"] for i in result["images"]] == [False]
    assert result["over"] and result["scrollWidth"] > WIDTH_PX
