"""stop_postgresql: a stop is bounded (Debian's unit would wait an hour), a server that does
not stop cleanly is killed and said so, and one that survives even that is reported."""

from module_utils import hastack_service as service


class Host:
    """systemd and pg_ctl as the module sees them: run_command answers from this state."""

    def __init__(self, stop_hangs=False, survives_kill=False, by_hand=False):
        self.active = not by_hand
        self.postmaster = True
        self.stop_hangs = stop_hangs
        self.survives_kill = survives_kill
        self.commands = []

    def run_command(self, cmd):
        self.commands.append(cmd)
        if cmd[:2] == ["systemctl", "is-active"]:
            return (0, "active\n", "") if self.active else (3, "inactive\n", "")
        if cmd[:1] == ["timeout"] and cmd[3] == "stop":
            if not self.active:
                return 0, "", ""
            if self.stop_hangs:
                return 124, "", ""
            self.active = self.postmaster = False
            return 0, "", ""
        if cmd[:2] == ["systemctl", "kill"]:
            if not self.survives_kill:
                self.active = self.postmaster = False
            return 0, "", ""
        if "pg_ctl" in cmd[4] and "status" in cmd:
            return (0, "", "") if self.postmaster else (3, "", "")
        if "pg_ctl" in cmd[4] and "stop" in cmd:
            self.postmaster = False
            return 0, "", ""
        raise AssertionError("unexpected command %s" % cmd)


def stop(host):
    return service.stop_postgresql(host, "postgresql@15-main", "/usr/lib/postgresql/15/bin",
                                   "/var/lib/postgresql/15/main", 60)


def test_a_clean_stop_is_bounded_and_not_a_kill():
    host = Host()
    assert stop(host) == (False, False)
    assert host.commands[0] == ["timeout", "60", "systemctl", "stop", "postgresql@15-main"]
    assert not any(cmd[:2] == ["systemctl", "kill"] for cmd in host.commands)


def test_a_stop_that_hangs_is_killed_and_reported():
    host = Host(stop_hangs=True)
    assert stop(host) == (True, False)
    assert ["systemctl", "kill", "--signal=SIGKILL", "postgresql@15-main"] in host.commands
    # Every stop is bounded, the one after the kill too.
    assert all(cmd[0] == "timeout" for cmd in host.commands if "stop" in cmd and cmd[-1] == "postgresql@15-main")


def test_a_server_that_survives_the_kill_is_reported_running():
    host = Host(stop_hangs=True, survives_kill=True)
    assert stop(host)[1] is True


def test_a_postmaster_started_by_hand_is_stopped_with_pg_ctl_fast():
    host = Host(by_hand=True)
    assert stop(host) == (False, False)
    fast = [cmd for cmd in host.commands if "stop" in cmd and "-m" in cmd]
    assert fast and fast[0][-2:] == ["-m", "fast"]
