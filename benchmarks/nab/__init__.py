"""Numenta Anomaly Benchmark (NAB v1.1): corpus input and output, and scoring."""

from benchmarks.nab.corpus import (
    Corpus,
    DataFile,
    list_data_files,
    list_detectors,
    load_corpus,
    load_detector_results,
    make_data_file,
    read_data_file,
    read_results,
    read_windows,
    results_path,
    write_results,
)
from benchmarks.nab.scoring import (
    PROFILES,
    CorpusScore,
    Counts,
    PartScore,
    Profile,
    score_corpus,
    score_corpus_all_profiles,
    sweep_thresholds,
)

__all__ = [
    "PROFILES",
    "Corpus",
    "CorpusScore",
    "Counts",
    "DataFile",
    "PartScore",
    "Profile",
    "list_data_files",
    "list_detectors",
    "load_corpus",
    "load_detector_results",
    "make_data_file",
    "read_data_file",
    "read_results",
    "read_windows",
    "results_path",
    "score_corpus",
    "score_corpus_all_profiles",
    "sweep_thresholds",
    "write_results",
]
