# Helpers shared by the rules: config validation and config -> library objects.
from snakemake.utils import validate

from countnet_gen.errors import CountnetError
from countnet_gen.spec import DatasetSpec

validate(config, workflow.source_path("../../config/schemas/config.schema.yaml"))


def _dataset_specs():
    specs = {}
    for name, entry in config["datasets"].items():
        try:
            specs[name] = DatasetSpec.from_dict({**entry, "name": name})
        except CountnetError as e:
            raise WorkflowError(f"config: dataset {name!r}: {e}") from None
    return specs


DATASETS = _dataset_specs()
