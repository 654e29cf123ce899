#!/usr/bin/env python3
"""End-to-end test of the browser console page in headless Chromium or Firefox.

Drives Debian's Chromium (through chromedriver) or Debian's Firefox ESR
(through geckodriver) over the W3C WebDriver HTTP API (the standard library
only: no Selenium, no downloaded browser) against a page served by a running
`circle-server --tls --auth --web-root examples/web/www`: open
https://localhost:PORT/, type into the form as a user would, click Run, read
the result from the page, watch a streamed script's lines appear one by one
and click Stop, and save a screenshot. Both browsers get the same checks.

The browser must trust the server's certificate by itself; certificate errors
are NOT ignored here (acceptInsecureCerts is false). As .ci/browser-tests.sh
does it:
  - Chromium: run this with HOME pointing at a home whose NSS database
    (~/.pki/nssdb) trusts the certificate;
  - Firefox: pass --firefox-profile DIR, a profile whose own NSS database
    (DIR/cert9.db) trusts it and whose user.js holds the offline prefs; the
    test runs Firefox on a copy of it.

Usage: console_page_test.py --url https://localhost:PORT/ --out DIR
           [--browser chromium|firefox] [--driver PATH] [--firefox-profile DIR]
Exit status 0 when every check passed; the last line says how many did.
"""

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

# A key of the protocol's ethers.js vectors; any key may sign in.
KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
KEY_PUBLIC = "024e3b81af9c2234cad09d679ce6035ed1392347ce64ce405f5dcd36228a25de6e"
KEY_ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver element key

# Prints `tick 0`, `tick 1`, … every 50 ms (the sandbox has no sleep: it
# watches the clock) until stopped, or until the server's limits stop it
# (browser-tests.sh runs the server with --script-timeout-ms 2000).
TICKING = ("let s = timestamp(); let n = 0;\n"
           "loop { while s.elapsed < n.to_float() * 0.05 {} print(`tick ${n}`); n += 1; }")

# As the machine's notes require for Chromium here: headless, no sandbox
# (root), no GPU, and none of the background connections a closed network
# refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1000,860",
]

# Firefox: headless (its window is sized through WebDriver once started). Its
# offline prefs live in the profile's user.js (see --firefox-profile), where
# wasm-bindgen-test-runner's sessions find them too. The environment variable
# makes Firefox refuse every connection to a non-local address (its test
# mode; it also lets the profile switch Remote Settings off, which release
# builds otherwise ignore). It is set on geckodriver, whose Firefox inherits
# it: geckodriver 0.37 applies moz:firefoxOptions.env on Android only.
FIREFOX_ARGS = ["-headless"]
FIREFOX_ENV = {"MOZ_DISABLE_NONLOCAL_CONNECTIONS": "1"}

BROWSERS = {
    # browser: its WebDriver (Debian's chromedriver; geckodriver from PATH)
    "chromium": "/usr/bin/chromedriver",
    "firefox": "geckodriver",
}


class WebDriver:
    """The few WebDriver commands this test needs, over plain HTTP."""

    def __init__(self, base):
        self.base = base
        self.session = None

    def call(self, method, path, body=None, timeout=60):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.load(response).get("value")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise RuntimeError(f"WebDriver {method} {path}: HTTP {error.code}: {detail}") from None

    def start(self, browser, profile_dir):
        # Real verification: an untrusted certificate must fail the test.
        if browser == "chromium":
            capabilities = {
                "browserName": "chrome",
                "acceptInsecureCerts": False,
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": CHROMIUM_ARGS + [f"--user-data-dir={profile_dir}"],
                },
            }
        else:
            capabilities = {
                "browserName": "firefox",
                "acceptInsecureCerts": False,
                "moz:firefoxOptions": {
                    "binary": "/usr/bin/firefox-esr",
                    "args": FIREFOX_ARGS + ["-profile", profile_dir],
                },
            }
        value = self.call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}},
                          timeout=120)
        self.session = value["sessionId"]
        if browser == "firefox":
            # The same window as Chromium's --window-size.
            self.call("POST", self.s("/window/rect"), {"width": 1000, "height": 860})

    def s(self, path):
        return f"/session/{self.session}{path}"

    def open(self, url):
        self.call("POST", self.s("/url"), {"url": url})

    def title(self):
        return self.call("GET", self.s("/title"))

    def find(self, css):
        return self.call("POST", self.s("/element"), {"using": "css selector", "value": css})[ELEMENT]

    def text(self, css):
        return self.call("GET", self.s(f"/element/{self.find(css)}/text"))

    def attribute(self, css, name):
        return self.call("GET", self.s(f"/element/{self.find(css)}/attribute/{name}"))

    def property(self, css, name):
        return self.call("GET", self.s(f"/element/{self.find(css)}/property/{name}"))

    def type_into(self, css, text):
        element = self.find(css)
        self.call("POST", self.s(f"/element/{element}/clear"), {})
        if text:
            self.call("POST", self.s(f"/element/{element}/value"), {"text": text})

    def click(self, css):
        self.call("POST", self.s(f"/element/{self.find(css)}/click"), {})

    def screenshot(self, path):
        png = base64.b64decode(self.call("GET", self.s("/screenshot")))
        with open(path, "wb") as file:
            file.write(png)
        return len(png)

    def stop(self):
        if self.session:
            try:
                self.call("DELETE", self.s(""), timeout=10)
            except (OSError, RuntimeError):
                pass
            self.session = None


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(what, condition, timeout=30.0):
    """Polls `condition` until it returns something truthy, or fails."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
            if last:
                return last
        except (OSError, RuntimeError, KeyError) as error:
            last = error
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def run_script(driver, script):
    """Types `script`, clicks Run, and returns (state, output) once settled."""
    driver.type_into("#script", script)
    driver.click("#run")
    state = wait_for(
        "the script's result",
        lambda: (s := driver.attribute("#output", "data-state")) in ("done", "error") and s)
    return state, driver.text("#output")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the page, e.g. https://localhost:8443/")
    parser.add_argument("--out", required=True, help="folder for the screenshot")
    parser.add_argument("--browser", choices=sorted(BROWSERS), default="chromium")
    parser.add_argument("--driver", help="the WebDriver binary (chromedriver or geckodriver); "
                        "default: /usr/bin/chromedriver, or geckodriver from PATH")
    parser.add_argument("--firefox-profile",
                        help="Firefox only: a profile whose cert9.db trusts the certificate "
                        "(copied, never changed)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    browser = args.browser
    driver_binary = args.driver or BROWSERS[browser]
    if browser == "firefox" and not args.firefox_profile:
        parser.error("--browser firefox needs --firefox-profile (a profile that trusts the "
                     "server's certificate)")

    passed, failed = 0, 0

    def check(name, condition, detail=""):
        nonlocal passed, failed
        if condition:
            passed += 1
            print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name}: {detail}")

    port = free_port()
    driver_name = os.path.basename(driver_binary)
    log = open(os.path.join(args.out, f"{driver_name}.log"), "w")
    driver_env = dict(os.environ, **(FIREFOX_ENV if browser == "firefox" else {}))
    driver_process = subprocess.Popen(
        [driver_binary, f"--port={port}"], stdout=log, stderr=subprocess.STDOUT, env=driver_env)
    driver = WebDriver(f"http://127.0.0.1:{port}")
    # The browser's profile; removed only once the browser has quit.
    scratch = tempfile.mkdtemp(prefix=f"console-page-{browser}-")
    try:
        wait_for(driver_name, lambda: driver.call("GET", "/status", timeout=2).get("ready"))
        if browser == "firefox":
            # Firefox writes into its profile: run it on a copy.
            profile = os.path.join(scratch, "profile")
            shutil.copytree(args.firefox_profile, profile,
                            ignore=shutil.ignore_patterns("lock", ".parentlock"))
        else:
            profile = scratch
        driver.start(browser, profile)
        try:
            driver.open(args.url)
        except RuntimeError as error:
            # Firefox answers navigation to an untrusted certificate with
            # an "insecure certificate" error.
            raise AssertionError(
                f"the page did not load: does {browser} trust the server's certificate? "
                f"({error})") from None
        title = driver.title()
        if title != "circles console":
            # Chromium's interstitial ("Privacy error") when it does not
            # trust the certificate: say so rather than time out later.
            where = ("HOME's ~/.pki/nssdb" if browser == "chromium"
                     else "the profile's cert9.db")
            raise AssertionError(
                f"the page did not load (title {title!r}): does {browser} trust the "
                f"server's certificate? ({where} must hold it)")
        # The page loaded over https:// (the certificate was trusted) and
        # its WebAssembly client initialised.
        status = wait_for("the page to load its client",
                          lambda: driver.attribute("#status", "data-state") == "idle"
                          and driver.text("#status"))
        check("page loads over https and initialises the WASM client",
              status == "ready", status)
        expected_ws = args.url.replace("https://", "wss://").rstrip("/") + "/ws"
        url_field = driver.property("#url", "value")
        check("the server URL defaults to this origin's /ws", url_field == expected_ws, url_field)

        # The key field is a collapsed developer option: open it.
        check("the secret-key field starts collapsed",
              driver.property("#developer", "open") is False)
        driver.click("#developer summary")
        # The server runs with --auth: without a key, play is refused
        # with the protocol's code, and the page shows it.
        driver.type_into("#key", "")
        state, output = run_script(driver, "1 + 1")
        check("play before signing in shows error -32002",
              state == "error" and output.startswith("error -32002:"), f"{state}: {output}")

        # With a key: Sign-In with Ethereum in the page, then the script
        # sees the caller's key.
        driver.type_into("#key", KEY)
        state, output = run_script(
            driver, 'print("hello from " + CIRCLE_NAME);\nCALLER_PUBLIC_KEY')
        check("signed in, the script runs as the caller",
              state == "done" and output == f"hello from circle\n{KEY_PUBLIC}",
              f"{state}: {output!r}")
        status = driver.text("#status")
        check("the status names the signed-in address", KEY_ADDRESS in status, status)

        state, output = run_script(driver, "let x = ;")
        check("a script error shows error -32003",
              state == "error" and output.startswith("error -32003:"), f"{state}: {output}")

        # Streaming: lines show up while the script runs; Stop cancels it.
        driver.type_into("#script", TICKING)
        check("Stop is disabled while nothing runs",
              driver.property("#stop", "disabled") is True)
        driver.click("#run")
        seen = wait_for("three streamed lines while the script runs", lambda: (
            driver.attribute("#output", "data-state") == "running"
            and int(driver.attribute("#output", "data-lines") or 0) >= 3
            and driver.text("#output")), timeout=10)
        ticks = seen.split("\n")
        check(f"lines appear one by one, in order, while the script runs ({len(ticks)} seen)",
              ticks == [f"tick {n}" for n in range(len(ticks))], repr(seen))
        check("Stop is enabled while the script runs",
              driver.property("#stop", "disabled") is False)
        clicked = time.monotonic()
        driver.click("#stop")
        state = wait_for("the cancelled state", lambda: (
            s := driver.attribute("#output", "data-state")) in ("cancelled", "done", "error") and s,
            timeout=10)
        took = time.monotonic() - clicked
        output = driver.text("#output")
        check(f"Stop cancels the script: the page shows it cancelled ({took * 1000:.0f} ms)",
              state == "cancelled" and output.endswith("(cancelled)")
              and output.startswith(seen), f"{state}: {output!r}")
        check("Stop is disabled again once the run ended",
              driver.property("#stop", "disabled") is True)

        # The last run stays on screen for the screenshot.
        state, output = run_script(driver, 'print("hello from the browser");\n40 + 2')
        check("a script's output is read back from the page",
              state == "done" and output == "hello from the browser\n42",
              f"{state}: {output!r}")
        path = os.path.join(args.out, f"console-page-{browser}.png")
        size = driver.screenshot(path)
        check("screenshot saved", size > 1000, f"{size} bytes")
        print(f"screenshot: {path}")
    except (AssertionError, RuntimeError, OSError, KeyError) as error:
        failed += 1
        print(f"FAIL {error}")
    finally:
        driver.stop()
        driver_process.terminate()
        try:
            driver_process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            driver_process.kill()
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"console-page ({browser}): {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
