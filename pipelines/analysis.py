"""The analysis pipeline: a ParallelFor over an analysis's settings, then its report; runnable with kfp's
local runner (``raserec analyze <name> --pipeline``). Each setting's task trains what it needs into the
shared cache folder, so settings that share a model share it (and a rerun retrains nothing)."""

import json
from pathlib import Path
from typing import Any, List

from kfp import dsl

from components.analysis import analyze_point, analyze_report


@dsl.pipeline(name="raserec-analysis", description="One of the paper's analyses of RaSeRec, one task per setting")
def analysis_pipeline(name: str, settings: List[str], options_json: str, inputs_json: str, output: str, cache: str,
                      config_yaml: str = "", mlflow_tracking_uri: str = "",
                      mlflow_experiment: str = "raserec-analysis") -> str:
    with dsl.ParallelFor(settings, parallelism=1) as setting:  # the cache is written by one task at a time
        point = analyze_point(name=name, setting_json=setting, options_json=options_json, inputs_json=inputs_json,
                              output=output, cache=cache, config_yaml=config_yaml).set_caching_options(False)
    return analyze_report(name=name, rows_json=dsl.Collected(point.output), options_json=options_json, output=output,
                          mlflow_tracking_uri=mlflow_tracking_uri,
                          mlflow_experiment=mlflow_experiment).set_caching_options(False).output


def run_local(name: str, options: dict[str, Any], inputs, output: Path, cache: Path, config_yaml: str,
              tracking_uri: str = "", experiment: str = "raserec-analysis") -> dict[str, Any]:
    """The pipeline through kfp's local runner (pipeline root ``output/pipeline``). The runner prints the
    tasks' logs on stdout; they go to stderr, so that stdout holds the result only."""
    import contextlib
    import sys

    from kfp import local

    from raserec_core.analysis.run import settings

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(output / "pipeline"),
               enable_caching=False)
    with contextlib.redirect_stdout(sys.stderr):
        task = analysis_pipeline(
            name=name, settings=[json.dumps(s) for s in settings(name, options)], options_json=json.dumps(options),
            inputs_json=json.dumps({k: str(getattr(inputs, k)) for k in ("data", "model", "memory", "baseline")}),
            output=str(output), cache=str(cache), config_yaml=config_yaml, mlflow_tracking_uri=tracking_uri,
            mlflow_experiment=experiment,
        )
    record = json.loads(Path(task.output).read_text())
    return {"analysis": name, "output": str(output), "rows": len(record["rows"]), "pipeline": True}
