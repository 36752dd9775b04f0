"""Components of the analysis pipeline: one setting of an analysis, and the report from all of them.
Their inputs are folders the tasks share (a dataset, models, a bank, the cache); the logic is in
``raserec_core.analysis``, reached through the component runtime."""

from typing import List

from kfp import dsl

from .image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def analyze_point(name: str, setting_json: str, options_json: str, inputs_json: str, output: str, cache: str,
                  config_yaml: str) -> str:
    """One setting of analysis ``name`` (trains what it needs into ``cache``); returns its rows as JSON."""
    from components.analysis_runtime import analysis_point

    return analysis_point(name, setting_json, options_json, inputs_json, output, cache, config_yaml)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def analyze_report(name: str, rows_json: List[str], options_json: str, output: str, mlflow_tracking_uri: str,
                   mlflow_experiment: str) -> str:
    """Report, plots and CSVs of analysis ``name`` in ``output`` from every setting's rows."""
    from components.analysis_runtime import analysis_report

    return analysis_report(name, rows_json, options_json, output, mlflow_tracking_uri, mlflow_experiment)
