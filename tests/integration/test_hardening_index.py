"""Issue 12's defects, each by its number, and the tests that reproduce it (each failed on the code before
its fix). This module is the index `tests/integration/test_adversarial.py` points to; the test below keeps
it true: every name listed must be a test function of that module, so the index can't rot."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HARDENING: dict[str, list[str]] = {
    "1 local backend survives kill -9 of the server (exactly once, adopted, true exit status, nothing stuck)": [
        "tests/e2e/test_crash_safety.py::test_local_runs_survive_kill_9_of_the_server",
        "tests/integration/test_local_runs.py::test_a_run_outlives_a_killed_server_and_is_adopted_not_started_again",
        "tests/integration/test_local_runs.py::test_the_true_exit_code_of_a_run_that_ended_while_no_server_ran",
        "tests/integration/test_local_runs.py::test_an_adopted_run_is_cancelled_through_its_supervisor",
        "tests/integration/test_local_runs.py::test_a_run_that_ended_without_a_record_is_lost_and_its_leftovers_stopped",
        "tests/integration/test_local_runs.py::test_a_reused_pid_is_never_signalled",
        "tests/integration/test_local_runs.py::test_reconcile_finishes_a_running_job_without_external_id_from_its_exit_record",
    ],
    "2 a clean stop loses no final status": [
        "tests/e2e/test_crash_safety.py::test_a_clean_stop_applies_the_exit_of_every_trainer_it_stops",
        "tests/integration/test_local_runs.py::test_stop_all_refuses_new_launches",
    ],
    "3 disk full is a 503, /health degraded, recovery without restart, launches retried": [
        "tests/integration/test_disk_full.py::test_a_full_disk_is_503_and_recovers_without_restart",
        "tests/integration/test_disk_full.py::test_a_launch_that_hits_the_full_disk_is_launched_once_space_is_back",
        "tests/integration/test_disk_full.py::test_a_launch_whose_submission_could_not_be_recorded_is_not_left_submitting",
        "tests/integration/test_disk_full.py::test_sqlite_full_is_store_unavailable_and_passes",
    ],
    "4 auth never turns itself off": [
        "tests/integration/test_auth_config.py::test_a_value_naming_no_token_is_a_configuration_error",
        "tests/integration/test_auth_config.py::test_a_short_token_is_a_configuration_error",
        "tests/integration/test_auth_config.py::test_the_deployed_api_refuses_every_route_but_health",
        "tests/integration/test_auth_config.py::test_the_embedded_server_refuses_to_start",
        "tests/integration/test_auth_config.py::test_unset_is_auth_off_and_says_so",
    ],
    "5 bounded connections": [
        "tests/integration/test_http_limits.py::test_a_connection_that_never_sends_is_closed_after_keepalive",
        "tests/integration/test_http_limits.py::test_many_idle_connections_are_all_closed",
        "tests/integration/test_http_limits.py::test_half_sent_headers_are_answered_408_and_closed",
        "tests/integration/test_http_limits.py::test_half_sent_body_is_answered_408_and_closed",
        "tests/integration/test_http_limits.py::test_an_endless_chunked_body_gets_413_and_is_not_read_on",
        "tests/integration/test_http_limits.py::test_a_content_length_over_the_limit_is_413_with_connection_close",
        "tests/integration/test_http_limits.py::test_connections_over_the_limit_are_refused_with_json_and_health_answers_again",
    ],
    "6 every error is JSON, protocol-level 400s included": [
        "tests/integration/test_protocol_errors.py::test_malformed_requests_get_a_json_error_and_the_connection_closes",
        "tests/integration/test_protocol_errors.py::test_a_malformed_request_after_a_good_one_on_the_same_connection",
    ],
    "7 small holes: Last-Event-ID bound, redact then cut, Vary: Origin": [
        "tests/integration/test_small_holes.py::test_last_event_id_out_of_range_is_a_400_naming_it",
        "tests/unit/test_redact_cut.py::test_no_part_of_a_secret_survives_the_cut",
        "tests/unit/test_redact_cut.py::test_local_backend_redacts_before_it_cuts",
        "tests/integration/test_small_holes.py::test_vary_origin_on_every_answer_when_cors_is_configured",
    ],
    "8 validation gaps: int flag ranges, duplicate keys, hf_token conflict": [
        "tests/unit/test_flag_bounds.py::test_api_applies_the_flag_range",
        "tests/unit/test_flag_bounds.py::test_trainer_parser_applies_the_same_range",
        "tests/integration/test_duplicate_keys.py::test_max_steps_out_of_range_is_400_naming_it",
        "tests/integration/test_duplicate_keys.py::test_a_repeated_key_is_400_naming_its_path",
        "tests/integration/test_duplicate_keys.py::test_hf_token_that_differs_from_env_is_400_naming_both",
    ],
    "9 the local topology matches the deployed one": [
        "tests/integration/test_local_stack_topology.py::test_poison_message_is_dead_lettered_and_the_next_request_becomes_a_job",
        "tests/integration/test_local_stack_topology.py::test_sigterm_twice_to_the_stack_stops_everything_and_logs_go_to_the_setting",
        "tests/infra/test_infra_files.py::test_local_stack_creates_what_terraform_creates",
    ],
}


def test_every_listed_test_exists() -> None:
    for defect, tests in HARDENING.items():
        assert tests, defect
        for ref in tests:
            path, _, name = ref.partition("::")
            tree = ast.parse((ROOT / path).read_text())
            names = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
            assert name in names, f"{defect}: {ref} is not a test any more"
