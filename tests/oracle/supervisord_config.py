"""How real supervisord reads a configuration file, printed as JSON (the config oracle).

Usage: python supervisord_config.py FILE

Loads FILE with supervisord's own ServerOptions (the code `supervisord -c FILE` runs before it
starts anything) and prints every process of every group and event listener pool with the
settings that decide how it is run: its name, its group, its argv (supervisord splits `command`
with shlex at spawn time), restart policy, timings, signals, user, directory, umask, environment
(the [supervisord] environment merged in, as supervisord does), exit codes and output targets.
On a configuration supervisord refuses it prints {"error": MESSAGE} and exits 2.

Shape (read by tests/tests/oracle.rs):
  {"programs": [PROCESS...], "eventlisteners": [{"pool", "events", "buffer_size", "priority",
   "processes": [PROCESS...]}], "heterogeneous_groups": [NAME...]}
"""

import json
import pwd
import shlex
import sys

from supervisor import datatypes
from supervisor.events import EventTypes
from supervisor.options import (
    EventListenerPoolConfig,
    FastCGIGroupConfig,
    ServerOptions,
)


EVENT_NAMES = {
    getattr(EventTypes, n): n for n in dir(EventTypes) if not n.startswith("_")
}


def log_target(value, maxbytes, backups):
    if value is datatypes.Automatic:
        return {"kind": "auto"}
    if value is None:
        return {"kind": "none"}
    return {"kind": "file", "path": value, "max_bytes": maxbytes, "backups": backups}


def autorestart(value):
    if value is datatypes.RestartWhenExitUnexpected:
        return "unexpected"
    return "true" if value else "false"


def process(p, group):
    user = None
    if p.uid is not None:
        user = {"uid": p.uid, "name": pwd.getpwuid(p.uid).pw_name}
    return {
        "name": p.name,
        # supervisord shows a group only when it differs from the process name.
        "group": None if group == p.name else group,
        "command": shlex.split(p.command),
        "autostart": bool(p.autostart),
        "autorestart": autorestart(p.autorestart),
        "startsecs": p.startsecs,
        "startretries": p.startretries,
        "stopsignal": int(p.stopsignal),
        "stopwaitsecs": p.stopwaitsecs,
        "stopasgroup": bool(p.stopasgroup),
        "killasgroup": bool(p.killasgroup),
        "priority": p.priority,
        "directory": p.directory,
        "user": user,
        "umask": p.umask,
        "environment": dict(p.environment or {}),
        "exitcodes": list(p.exitcodes),
        "redirect_stderr": bool(p.redirect_stderr),
        "stdout": log_target(p.stdout_logfile, p.stdout_logfile_maxbytes, p.stdout_logfile_backups),
        "stderr": log_target(p.stderr_logfile, p.stderr_logfile_maxbytes, p.stderr_logfile_backups),
    }


def main(path):
    sections = []
    original = ServerOptions.process_groups_from_parser

    def capture(self, parser):
        sections.extend(parser.sections())
        return original(self, parser)

    ServerOptions.process_groups_from_parser = capture
    options = ServerOptions()
    # supervisord reports a bad file through usage(), which exits; keep the message instead.
    def usage(msg):
        print(json.dumps({"error": str(msg)}))
        sys.exit(2)

    options.usage = usage
    options.realize(args=["-c", path])
    out = {
        "programs": [],
        "eventlisteners": [],
        "heterogeneous_groups": sorted(
            s.split(":", 1)[1] for s in sections if s.startswith("group:")
        ),
    }
    for group in options.process_group_configs:
        if isinstance(group, FastCGIGroupConfig):
            continue
        processes = [process(p, group.name) for p in group.process_configs]
        if isinstance(group, EventListenerPoolConfig):
            out["eventlisteners"].append(
                {
                    "pool": group.name,
                    "events": sorted(EVENT_NAMES[e] for e in group.pool_events),
                    "buffer_size": group.buffer_size,
                    "priority": group.priority,
                    "processes": processes,
                }
            )
        else:
            for p in processes:
                p["group_priority"] = group.priority
            out["programs"].extend(processes)
    print(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
