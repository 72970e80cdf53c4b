"""BEAT block: hands its data to adapters.beat.predict_block, which runs the harness's core."""
import sys


class Algorithm:
    def setup(self, parameters):
        # BEAT copies this file into a temporary prefix before running it, so the harness
        # is found through the parameter, not next to this file (beat/core/execution/base.py,
        # dump_runner_configuration).
        # str(): BEAT hands string parameters over as numpy.str_, which the import
        # system skips as a sys.path entry.
        harness = str(parameters["harness"])
        if harness and harness not in sys.path:
            sys.path.insert(0, harness)
        self.parameters = parameters
        return True

    def process(self, data_loaders, outputs):
        from adapters.beat import predict_block

        return predict_block(self.parameters, data_loaders, outputs)
