"""The counter adaptor: the smallest complete Octopus adaptor in Python.

Copy this folder to start your own. `Driver` is the export componentize-py looks for
(the WIT interface `driver`); the device's state lives in the module-level `DEVICE`,
because the limb gives every device its own instance of the component.
"""

from wit_world import exports
from wit_world.imports import types

from declared_models import DECLARATIONS  # models.json, made a module by build.sh
from octopus import Spec, driver_call, load_state, model_schemas, settings, to_json

NAME = "adaptors.edge.cattle.io/counter"
VERSION = "0.1.0+python"
LANGUAGE = "python"
MODEL = types.Model(api_version="devices.edge.cattle.io/v1alpha1", kind="CounterDevice")


class Device:
    """Everything one device needs between calls."""

    def __init__(self):
        self.count = 0
        self.step = 1

    def apply(self, spec_json):
        spec = Spec.parse(spec_json)
        step = spec.integer("step", default=1)
        interval = spec.integer("syncIntervalMs", default=1000, min=10)
        self.step = step
        return settings(interval)


DEVICE = Device()


class Driver(exports.Driver):
    def describe(self):
        return types.AdaptorInfo(
            name=NAME,
            version=VERSION,
            models=[types.ModelInfo(model=MODEL, resource_fields=[])],
        )

    @driver_call
    def configure(self, config):
        return DEVICE.apply(config.spec)

    @driver_call
    def reconfigure(self, config):
        return DEVICE.apply(config.spec)

    @driver_call
    def poll(self):
        DEVICE.count += DEVICE.step
        return to_json(count=DEVICE.count, language=LANGUAGE)

    @driver_call
    def snapshot(self):
        return to_json(count=DEVICE.count).encode("utf-8")

    @driver_call
    def restore(self, state, from_version):
        DEVICE.count = load_state(state, count=None)["count"]

    def shutdown(self):
        pass


class Models(exports.Models):
    """The export `models`: the CounterDevice schema the limb checks specs and statuses
    against, and `octopus crd` makes the CRD from. Leave it (and models.json) out to
    build for the plain `adaptor` world instead."""

    def describe_models(self):
        return model_schemas(DECLARATIONS)
