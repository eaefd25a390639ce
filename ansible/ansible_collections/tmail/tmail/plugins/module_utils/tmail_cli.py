"""Running the tmail CLI for the tmail_* modules.

The modules never touch the database themselves: every read and change is a
`tmail ... --json` command, so they act exactly as an admin at the shell
would (same validation, same transaction, same error messages). Check mode
is the same command with --dry-run: tmail does the work and rolls it back,
so what it predicts is what a real run does.
"""
import json

# The arguments every tmail_* module takes.
COMMON_ARGS = {
    "tmail": {"type": "str", "default": "tmail"},
    "config": {"type": "path"},
}


class Tmail:
    """`tmail [--config FILE] ARGS --json`, through module.run_command."""

    def __init__(self, module):
        self.module = module
        self.base = [module.params["tmail"]]
        if module.params["config"]:
            self.base += ["--config", module.params["config"]]

    def call(self, *args):
        """Run a command; (rc, JSON answer or None, error message)."""
        cmd = self.base + list(args) + ["--json"]
        rc, out, err = self.module.run_command(cmd)
        for line in err.splitlines():
            if line.startswith("tmail: warning: "):
                self.module.warn(line[len("tmail: warning: "):])
        try:
            answer = json.loads(out)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = None
        return rc, answer, self._error(rc, answer, err)

    def run(self, *args):
        """The JSON answer of a command that must succeed; else the task
        fails with tmail's own message."""
        rc, answer, error = self.call(*args)
        if rc != 0 or answer is None:
            self.fail(rc, error, args)
        return answer

    def fail(self, rc, error, args):
        self.module.fail_json(msg=error, rc=rc, cmd=self.base + list(args) + ["--json"])

    @staticmethod
    def _error(rc, answer, err):
        if rc == 0:
            return None
        if answer is not None and answer.get("error"):
            return answer["error"]          # {"ok": false, "error": "..."}
        # click refuses a malformed argument itself (exit 2), before tmail
        # can answer in JSON: its message is the "Error: ..." line.
        for line in err.splitlines():
            if line.startswith("Error: "):
                return line[len("Error: "):]
        return err.strip() or f"tmail exited with status {rc}"
