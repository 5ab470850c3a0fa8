"""The front door: HAProxy with TLS on both app servers under the app VIP.

The controller is the client: it sends a steady stream of requests over HTTPS through
the app VIP, verifying the certificate against the scenario's CA, while deploy.yml rolls
a new release out, while a broken release is rolled back, and while app1's host is
killed. The tests run in order and share the hosts.
"""

import http.client
import json
import os
import pathlib
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from hastack_testlib import EPHEMERAL, ROOT, HttpsClient, holds, playbook, psql, sh, wait_until

APP_VIP = "198.18.10.101"
APPS = {"front-app1": "198.18.10.21", "front-app2": "198.18.10.22"}
CA = EPHEMERAL / "ca" / "ca.crt"
GIT = EPHEMERAL / "app-git"


def tls_context():
    return ssl.create_default_context(cafile=str(CA))


def new_client():
    return HttpsClient(APP_VIP, CA, "front")


def report(capsys, figures):
    """Figures for docs/BENCHMARKS.md, in the CI log whether the test passes or not."""
    with capsys.disabled():
        print(f"\n[front] {figures}")


def failures(results):
    return [r for r in results if not isinstance(r[2], int)]


def explain(results):
    """What the hosts logged around failed requests: VIP moves and HAProxy's view."""
    failed = failures(results)
    if not failed:
        return ""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(failed[0][0] - 5))
    logs = [sh(app, f"journalctl --utc -q --since '{since}' -t hastack-keepalived -u haproxy -u hastack-app "
                    "| grep -v 'GET /health' | tail -40").stdout for app in APPS if sh(app, "true").returncode == 0]
    return f"{failed[:5]}\n" + "\n".join(logs)


def running_version(app):
    with urllib.request.urlopen(f"http://{APPS[app]}:8000/version", timeout=5) as response:
        return json.load(response)["version"]


def stats(app):
    """HAProxy's view on app: {server: (status, requests sent to it)}."""
    with urllib.request.urlopen(f"http://{APPS[app]}:8404/stats;csv", timeout=5) as response:
        lines = response.read().decode().lstrip("# ").splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]
    return {r["svname"]: (r["status"], int(r["stot"] or 0)) for r in rows
            if r["pxname"] == "app" and r["svname"] not in ("FRONTEND", "BACKEND")}


def release_repo():
    """A git repository on the controller with the reference app: tag v2 (good) and
    v3-broken (its WSGI module fails at import, so the app never answers /health)."""
    if GIT.exists():
        shutil.rmtree(GIT)
    shutil.copytree(ROOT / "app", GIT, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@hastack.test",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@hastack.test")

    def git(*args):
        subprocess.run(["git", "-C", str(GIT), *args], check=True, env=env, capture_output=True)

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "v2")
    git("tag", "v2")
    wsgi = GIT / "hastack_app" / "wsgi.py"
    wsgi.write_text('raise SystemExit("this release is broken on purpose")\n' + wsgi.read_text(encoding="utf-8"),
                    encoding="utf-8")
    git("commit", "-q", "-am", "broken")
    git("tag", "v3-broken")


@pytest.fixture(scope="module")
def repo():
    release_repo()
    return GIT


def test_https_through_the_vip_with_a_verified_certificate():
    with urllib.request.urlopen(f"https://{APP_VIP}/health", timeout=5, context=tls_context()) as response:
        assert response.status == 200 and json.load(response)["status"] == "ok"
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    # A client that does not trust the CA refuses the certificate.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"https://{APP_VIP}/health", timeout=5,
                               context=ssl.create_default_context())
    # The DNS name in the certificate verifies too (curl resolves it to the VIP).
    out = subprocess.run(["curl", "-sS", "--cacert", str(CA), "--resolve", f"app.hastack.test:443:{APP_VIP}",
                          "-o", "/dev/null", "-w", "%{http_code} %{ssl_verify_result}",
                          "https://app.hastack.test/health"], capture_output=True, text=True, check=False)
    assert out.stdout == "200 0", out.stderr


def test_http_redirects_to_https():
    connection = http.client.HTTPConnection(APP_VIP, 80, timeout=5)
    connection.request("GET", "/api/entries/count")
    response = connection.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == f"https://{APP_VIP}/api/entries/count"


def test_tls_1_2_clients_get_forward_secrecy():
    context = tls_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    connection = http.client.HTTPSConnection(APP_VIP, 443, timeout=5, context=context)
    connection.request("GET", "/health")
    assert connection.getresponse().status == 200
    name, version, _ = connection.sock.cipher()
    assert version == "TLSv1.2" and name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name)
    connection.close()


def vip_holder():
    return next(app for app in APPS if holds(app, APP_VIP))


def test_both_app_servers_take_requests_and_haproxy_reports_them():
    holder = vip_holder()
    before = stats(holder)
    client = new_client()
    client.start()
    time.sleep(3)
    results = client.stop()
    assert results and not failures(results), explain(results)
    after = stats(holder)
    for server in APPS:
        assert after[server][0] == "UP"
        assert after[server][1] > before[server][1], f"{server} got no requests"
    # HAProxy's own Prometheus metrics, on the admin address.
    with urllib.request.urlopen(f"http://{APPS['front-app2']}:8404/metrics", timeout=5) as response:
        assert 'haproxy_server_status{proxy="app",server="front-app1",state="UP"} 1' in response.read().decode()
    # The app VIP's check: HAProxy serves and has a healthy app server.
    assert sh("front-app1", "curl -s http://127.0.0.1:8405/ready").stdout == "ready"


def test_uploads_go_to_the_vip_holders_own_app_server():
    # file_sync copies uploads from the VIP holder to the other: a file written on the other
    # server would be replaced by the next copy.
    holder = vip_holder()
    other = next(app for app in APPS if app != holder)
    names = [f"front-{n}.bin" for n in range(6)]
    for name in names:
        request = urllib.request.Request(f"https://{APP_VIP}/api/files/{name}", data=b"x" * 1000, method="PUT")
        with urllib.request.urlopen(request, timeout=5, context=tls_context()) as response:
            assert response.status == 201
    listing = sh(holder, "ls /var/lib/hastack-app/uploads").stdout.split()
    assert set(names) <= set(listing)
    assert not set(names) & set(sh(other, "ls /var/lib/hastack-app/uploads").stdout.split())


def all_up_everywhere():
    """Every HAProxy has every app server UP. Right after a restart one health check may
    still fail while the app's second worker opens its pool ("UP 1/2"): wait it out."""
    def up():
        return all({server: state for server, (state, _) in stats(app).items()} == {s: "UP" for s in APPS}
                   for app in APPS)
    wait_until(up, timeout=15, message="every app server UP in every HAProxy", interval=0.5)


def acknowledged_ids_present(results):
    ids = [r[3] for r in results if r[3] is not None]
    present = int(psql("front-db1", f"SELECT count(*) FROM usage_entries WHERE id IN ({','.join(map(str, ids))})"))
    return len(ids), present


def test_rolling_deploy_without_a_failed_request(repo, capsys):
    assert running_version("front-app1") == running_version("front-app2") == "bundled"
    client = new_client()
    client.start()
    time.sleep(1)
    result = playbook("deploy.yml", "-e", f"app_git_repo={repo}", "-e", "app_git_version=v2")
    time.sleep(1)
    results = client.stop()
    assert result.returncode == 0, result.stdout[-3000:]
    assert "DEPLOY DONE" in result.stdout
    report(capsys, f"rolling deploy: {len(results)} requests, {len(failures(results))} failed, "
                   f"deploy.yml {result.seconds:.1f} s")
    assert not failures(results), explain(results)
    assert running_version("front-app1") == running_version("front-app2") == "v2"
    acked, present = acknowledged_ids_present(results)
    assert acked > 20 and present == acked
    # Both back in every HAProxy.
    all_up_everywhere()


def test_broken_release_stops_at_the_first_server_and_is_rolled_back(repo, capsys):
    client = new_client()
    client.start()
    result = playbook("deploy.yml", "-e", f"app_git_repo={repo}", "-e", "app_git_version=v3-broken",
                      "-e", "app_health_timeout=5")
    results = client.stop()
    assert result.returncode != 0
    assert "did not come up healthy on front-app1" in result.stdout
    assert "rolled back to git-" in result.stdout
    report(capsys, f"broken deploy: {len(results)} requests, {len(failures(results))} failed, "
                   f"deploy.yml {result.seconds:.1f} s")
    assert not failures(results), explain(results)
    assert running_version("front-app1") == running_version("front-app2") == "v2"
    # front-app2 never got the broken release switched in.
    assert "git-" in sh("front-app2", "readlink /opt/hastack-app/current").stdout
    all_up_everywhere()


def test_site_yml_leaves_a_deployed_release_alone():
    # The inventory still names the bundled app: the app servers' play prepares it but
    # switches nothing, and says how to roll it out.
    result = playbook("playbooks/app.yml")
    assert result.returncode == 0
    assert "runs git-" in result.stdout and "ansible-playbook deploy.yml" in result.stdout
    assert running_version("front-app1") == running_version("front-app2") == "v2"


def test_killing_the_vip_holders_host_costs_a_bounded_number_of_requests(capsys):
    # The harder case: the host dies with its HAProxy, its app server and the VIP (usually
    # front-app1, the first in the inventory; whichever won the first election).
    holder, other = sorted(APPS, key=lambda app: not holds(app, APP_VIP))
    assert holds(holder, APP_VIP) and not holds(other, APP_VIP)
    client = new_client()
    client.start()
    time.sleep(2)
    killed = time.time()
    subprocess.run(["podman", "kill", holder], check=True, capture_output=True)
    wait_until(lambda: holds(other, APP_VIP), timeout=10, message=f"the app VIP on {other}")
    time.sleep(6)
    results = client.stop()
    failed = failures(results)
    after = [r for r in results if r[0] > killed]
    last_failure = max((r[0] for r in failed), default=killed) - killed
    report(capsys, f"{holder} killed: {len(after)} requests after the kill, {len(failed)} failed, "
                   f"the last failure started {last_failure:.2f} s after the kill; {failed[:5]}")
    # Only requests in flight or started while the VIP moved fail (a client that waits
    # 50 ms after a failure); then app2 serves all.
    assert len(failed) <= 40
    assert last_failure < 5
    tail = [r for r in results if r[0] > killed + last_failure + 0.01]
    assert len(tail) > 10 and not failures(tail)
    acked, present = acknowledged_ids_present(results)
    assert present == acked
