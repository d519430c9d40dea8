"""Small helpers every Octopus adaptor in Python needs: spec parsing with errors that
name the field, status and snapshot JSON, and typed errors that become the WIT
`adaptor-error` variants.

Copy this file next to your `app.py`; it has no dependencies besides the bindings that
componentize-py generates at build time (`wit_world`).
"""

import json
import sys

from componentize_py_types import Err
from wit_world.imports import log as _log
from wit_world.imports import types


# ---------------------------------------------------------------- typed errors


class AdaptorFailure(Exception):
    """Base of the typed errors. Raise a subclass anywhere inside a driver method
    wrapped by `@driver_call`; it reaches the limb as the matching `adaptor-error`."""

    variant = types.AdaptorError_Internal

    def __init__(self, message):
        super().__init__(message)
        self.message = str(message)

    def to_wit(self):
        return self.variant(value=self.message)


class InvalidSpec(AdaptorFailure):
    variant = types.AdaptorError_InvalidSpec


class NotPermitted(AdaptorFailure):
    variant = types.AdaptorError_NotPermitted


class Unreachable(AdaptorFailure):
    variant = types.AdaptorError_Unreachable


class ProtocolError(AdaptorFailure):
    variant = types.AdaptorError_Protocol


class IncompatibleState(AdaptorFailure):
    variant = types.AdaptorError_IncompatibleState


class Internal(AdaptorFailure):
    variant = types.AdaptorError_Internal


def driver_call(method):
    """Decorates a driver method so that it never traps on a Python exception:
    `AdaptorFailure` becomes its `adaptor-error`, anything else `internal`.

    An exception that escapes an export makes componentize-py print a traceback and
    trap; with `--stub-wasi` even printing traps, and a trap costs the instance."""

    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except Err:
            raise
        except AdaptorFailure as failure:
            raise Err(failure.to_wit())
        except Exception as exc:  # a bug in the adaptor: report it, keep the instance
            raise Err(types.AdaptorError_Internal(value=f"{type(exc).__name__}: {exc}"))

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


# ---------------------------------------------------------------- capability errors


def capability_message(error):
    """A human message for a WIT `capability-error` value."""
    if isinstance(error, types.CapabilityError_Timeout):
        return "timed out"
    if isinstance(error, types.CapabilityError_Closed):
        return "closed by the peer"
    kind = type(error).__name__.split("_", 1)[-1]
    words = "".join(" " + c.lower() if c.isupper() else c for c in kind).strip()
    return f"{words}: {error.value}"


def from_capability(what, err, otherwise=Unreachable):
    """Turns `Err(capability-error)` raised by an import into a typed failure:
    `not-permitted` stays `not-permitted`, everything else becomes `otherwise`."""
    error = err.value if isinstance(err, Err) else err
    message = f"{what}: {capability_message(error)}"
    if isinstance(error, types.CapabilityError_NotPermitted):
        return NotPermitted(message)
    return otherwise(message)


def release(resource):
    """Drops a WIT resource handle (a stream, a port, a line) now, not whenever the
    garbage collector gets to it. Safe on None."""
    if resource is not None:
        resource.__exit__(None, None, None)


# ---------------------------------------------------------------- spec parsing


def _is_int(value):
    # JSON true/false load as bool, which Python counts as int; 3.0 is a float.
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value):
    return json.dumps(value)


class Spec:
    """A DeviceLink's `template.spec`, read field by field. Every getter raises
    `InvalidSpec` with a message that names the field; unknown fields are ignored."""

    def __init__(self, fields):
        self.fields = fields

    @classmethod
    def parse(cls, text):
        try:
            fields = json.loads(text) if text.strip() else {}
        except ValueError as exc:
            raise InvalidSpec(f"spec is not valid JSON: {exc}")
        if not isinstance(fields, dict):
            raise InvalidSpec("spec must be a JSON object")
        return cls(fields)

    def integer(self, name, default=None, min=None, max=None):
        """An integer field, `default` when absent (required when default is None),
        checked against `min..=max`."""
        if name not in self.fields or self.fields[name] is None:
            if default is None:
                raise InvalidSpec(f"{name} is required")
            return default
        value = self.fields[name]
        if not _is_int(value):
            raise InvalidSpec(f"{name} must be an integer, got {_show(value)}")
        if min is not None and max is not None and not min <= value <= max:
            raise InvalidSpec(f"{name} must be {min}..={max}, got {value}")
        if min is not None and value < min:
            raise InvalidSpec(f"{name} must be >= {min}, got {value}")
        if max is not None and value > max:
            raise InvalidSpec(f"{name} must be <= {max}, got {value}")
        return value

    def string(self, name, default=None):
        """A string field, `default` when absent (required when default is None)."""
        if name not in self.fields or self.fields[name] is None:
            if default is None:
                raise InvalidSpec(f"{name} is required")
            return default
        value = self.fields[name]
        if not isinstance(value, str):
            raise InvalidSpec(f"{name} must be a string, got {_show(value)}")
        return value

    def endpoint(self, name):
        """A required `host:port` string."""
        value = self.string(name)
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidSpec(f"{name} must be host:port, got {_show(value)}")
        return value


def settings(poll_interval_ms):
    """The `device-settings` that `configure` returns; None means never poll."""
    return types.DeviceSettings(poll_interval_ms=poll_interval_ms)


# ---------------------------------------------------------------- status and state


def to_json(**fields):
    """A compact JSON object, for `poll` results and snapshots."""
    return json.dumps(fields, separators=(",", ":"))


def load_state(data, **schema):
    """Parses a snapshot that must be a JSON object holding exactly the integer fields
    named in `schema` (name=minimum, or name=None for any integer). Anything else is
    `IncompatibleState`. Returns the fields as a dict."""
    try:
        state = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise IncompatibleState("state is not a UTF-8 JSON object")
    if not isinstance(state, dict):
        raise IncompatibleState("state is not a JSON object")
    out = {}
    for name, minimum in schema.items():
        value = state.get(name)
        if not _is_int(value) or (minimum is not None and value < minimum):
            rule = "an integer" if minimum is None else f"an integer >= {minimum}"
            raise IncompatibleState(f"state field {name} must be {rule}, got {_show(value)}")
        out[name] = value
    return out


# ---------------------------------------------------------------- logging


def log_info(message):
    _log.log(_log.Level.INFO, message)


def log_warn(message):
    _log.log(_log.Level.WARN, message)


class _LogWriter:
    """A text stream that sends every complete line to the limb's log. Built with
    `--stub-wasi`, the component has no real stdout/stderr: writing to them traps."""

    def __init__(self, level):
        self.level, self.pending = level, ""

    def write(self, text):
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            _log.log(self.level, line)
        return len(text)

    def flush(self):
        if self.pending:
            _log.log(self.level, self.pending)
            self.pending = ""

    def isatty(self):
        return False


# Importing this module sends print() and tracebacks to the limb log instead of trapping.
# Only inside the component: the native tests (CPython) keep their real streams.
if sys.platform == "wasi":
    sys.stdout = _LogWriter(_log.Level.INFO)
    sys.stderr = _LogWriter(_log.Level.WARN)


def model_schemas(declarations):
    """The `models` export's answer (contract 0.1.3, world `described-adaptor`) from the
    text of your folder's models.json (build.sh makes it the module `declared_models`):
    one declaration, or a list of them for an adaptor serving several models. The limb
    checks every spec and status against it; `octopus crd` makes the CRD from it."""
    from wit_world.exports import models

    parsed = json.loads(declarations)
    out = []
    for d in parsed if isinstance(parsed, list) else [parsed]:
        status = d.get("status")
        out.append(
            models.ModelSchema(
                model=types.Model(api_version=d["apiVersion"], kind=d["kind"]),
                description=d.get("description", ""),
                spec=json.dumps(d["spec"]),
                status="" if status is None else json.dumps(status),
                short_names=list(d.get("shortNames", [])),
                categories=list(d.get("categories", [])),
                printer_columns=[
                    models.PrinterColumn(
                        name=c["name"],
                        json_path=c["jsonPath"],
                        type=c["type"],
                        format=c.get("format"),
                        description=c.get("description"),
                        priority=c.get("priority", 0),
                    )
                    for c in d.get("printerColumns", [])
                ],
            )
        )
    return out
