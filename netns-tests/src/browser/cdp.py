# A minimal DevTools client for netns-tests/src/browser.rs, run in the lab's
# client namespace: python3 cdp.py URL DEADLINE_SECS CHROMIUM ARGS...
#
# Starts Chromium with --remote-debugging-pipe (commands on its fd 3,
# replies on its fd 4, each a JSON message ended by NUL), opens URL in a
# new tab, and polls the page's window.hotpair every 50 ms: prints
# "PROGRESS <bytes received>" as it grows and finally one
# "RESULT <json>" line (the page's window.hotpair, or {"state": "timeout"}).
# Chromium gets SIGKILL when this process dies (PR_SET_PDEATHSIG), so a test
# that kills this driver also kills the browser; its helpers exit with it.
import ctypes, json, os, signal, subprocess, sys, threading, time

url, deadline_secs, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
deadline = time.monotonic() + deadline_secs

to_chrome_r, to_chrome_w = os.pipe()
from_chrome_r, from_chrome_w = os.pipe()


def child_setup():
    # Move the pipe ends out of the way, then onto 3 and 4.
    r = os.dup(to_chrome_r)
    w = os.dup(from_chrome_w)
    os.dup2(r, 3)
    os.dup2(w, 4)
    for fd in (r, w, to_chrome_r, to_chrome_w, from_chrome_r, from_chrome_w):
        if fd not in (3, 4):
            try:
                os.close(fd)
            except OSError:
                pass
    os.nice(10)
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


chrome = subprocess.Popen(
    argv + ["--remote-debugging-pipe", "about:blank"],
    stdin=subprocess.DEVNULL,
    stdout=sys.stderr,
    stderr=sys.stderr,
    close_fds=False,
    preexec_fn=child_setup,
)
os.close(to_chrome_r)
os.close(from_chrome_w)

replies = {}
cond = threading.Condition()


def reader():
    buf = b""
    while True:
        data = os.read(from_chrome_r, 65536)
        if not data:
            with cond:
                replies["eof"] = True
                cond.notify_all()
            return
        buf += data
        while b"\0" in buf:
            msg, buf = buf.split(b"\0", 1)
            m = json.loads(msg)
            if "id" in m:
                with cond:
                    replies[m["id"]] = m
                    cond.notify_all()


threading.Thread(target=reader, daemon=True).start()
next_id = 0


def call(method, params=None, session=None, timeout=10.0):
    global next_id
    next_id += 1
    i = next_id
    msg = {"id": i, "method": method, "params": params or {}}
    if session:
        msg["sessionId"] = session
    os.write(to_chrome_w, json.dumps(msg).encode() + b"\0")
    end = time.monotonic() + timeout
    with cond:
        while i not in replies:
            if replies.get("eof"):
                raise RuntimeError("Chromium closed its DevTools pipe (exit %s)" % chrome.poll())
            left = end - time.monotonic()
            if left <= 0:
                raise RuntimeError("no reply to %s within %.0f s" % (method, timeout))
            cond.wait(left)
        m = replies.pop(i)
    if "error" in m:
        raise RuntimeError("%s: %s" % (method, m["error"]))
    return m["result"]


result = {"state": "timeout"}
try:
    target = call("Target.createTarget", {"url": url}, timeout=30)["targetId"]
    session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    last = -1
    while time.monotonic() < deadline:
        try:
            r = call(
                "Runtime.evaluate",
                {"expression": "JSON.stringify(window.hotpair || null)", "returnByValue": True},
                session,
            )
            v = json.loads(r["result"].get("value") or "null")
        except (RuntimeError, ValueError) as e:
            # Still navigating (no context yet), or a page that is not ours.
            if "closed its DevTools pipe" in str(e):
                raise
            v = None
        if v:
            if v.get("received", 0) != last:
                last = v.get("received", 0)
                print("PROGRESS %d" % last, flush=True)
            if v.get("state") in ("done", "error"):
                dom = call(
                    "Runtime.evaluate",
                    {"expression": "document.getElementById('sha256').textContent",
                     "returnByValue": True},
                    session,
                )
                v["dom_sha256"] = dom["result"].get("value", "")
                result = v
                break
        time.sleep(0.05)
except Exception as e:
    result = {"state": "driver-error", "error": "%s: %s" % (type(e).__name__, e)}
finally:
    try:
        call("Browser.close", timeout=5)
    except Exception:
        pass
    try:
        chrome.wait(5)
    except subprocess.TimeoutExpired:
        chrome.kill()
        chrome.wait()
print("RESULT " + json.dumps(result), flush=True)
