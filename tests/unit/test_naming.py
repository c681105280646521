"""Name derivation (shared/domain/naming.py): every backend object's name comes from the job, and the
rules (DNS-1123, 63 characters, never ending in '-', unique per job id) hold for any input."""

import re

import pytest

from shared.domain import naming

UUID = "5f0c7c2e-8d1a-4b7e-9c3a-2b1d4e6f8a90"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize(
    "name, job_id, expected",
    [
        ("aml-qlora-k8s", UUID, "aml-qlora-k8s-4e6f8a90"),
        ("My Fine_Tune!!", UUID, "my-fine-tune-4e6f8a90"),
        ("--leading and trailing--", UUID, "leading-and-trailing-4e6f8a90"),
        ("Ünïcödé ☃ name", UUID, "n-c-d-name-4e6f8a90"),
        ("", UUID, "job-4e6f8a90"),
        ("!!!", UUID, "job-4e6f8a90"),
        ("a" * 100, UUID, "a" * 54 + "-4e6f8a90"),
        ("a" * 53 + "-b" * 10, UUID, "a" * 53 + "-4e6f8a90"),  # truncation never leaves '--'
    ],
    ids=["readme", "spaces-underscores", "dashes", "unicode", "empty", "symbols", "long", "cut-at-dash"],
)
def test_k8s_job_name(name, job_id, expected):
    got = naming.k8s_job_name(name, job_id)
    assert got == expected
    assert len(got) <= 63 and DNS_LABEL.match(got)


@pytest.mark.parametrize("job_id", [UUID, "batch-7", "Job_ID/with:odd chars", "x" * 300, "ABCDEF12345678"])
@pytest.mark.parametrize("name", ["aml-qlora-k8s", "x" * 200, "", "Ünïcödé"])
def test_every_name_is_valid_for_any_input(name, job_id):
    job = naming.k8s_job_name(name, job_id)
    secret = naming.k8s_secret_name(name, job_id)
    display = naming.vertex_display_name(name, job_id)
    for value in (job, secret):
        assert len(value) <= 63 and DNS_LABEL.match(value), value
    assert secret.endswith("-env") and job != secret
    assert 0 < len(display) <= 128 and not re.search(r"[\x00-\x1f]", display)
    assert re.match(r"^[a-z0-9]{8}$", naming.job_suffix(job_id))


def test_same_name_two_ids_never_collide_and_one_id_is_stable():
    other = "0b7e1f3a-1111-4c2d-8e9f-000000000001"
    assert naming.k8s_job_name("train", UUID) != naming.k8s_job_name("train", other)
    assert naming.k8s_secret_name("train", UUID) != naming.k8s_secret_name("train", other)
    assert naming.vertex_display_name("train", UUID) != naming.vertex_display_name("train", other)
    assert naming.k8s_job_name("train", UUID) == naming.k8s_job_name("train", UUID)


def test_suffix_is_the_tail_of_a_uuid_and_a_hash_otherwise():
    assert naming.job_suffix(UUID) == "4e6f8a90"
    hashed = naming.job_suffix("Odd/Id")
    assert hashed == naming.job_suffix("Odd/Id") and hashed != naming.job_suffix("odd/id")
    assert naming.job_suffix("short") != "short"  # fewer than 8 alphanumerics: hashed


def test_secret_name():
    assert naming.k8s_secret_name("aml-qlora-k8s", UUID) == "aml-qlora-k8s-4e6f8a90-env"
    assert naming.k8s_secret_name("a" * 100, UUID) == "a" * 50 + "-4e6f8a90-env"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("aml-qlora-vertex", "aml-qlora-vertex-4e6f8a90"),
        ("Mixed Case name", "Mixed Case name-4e6f8a90"),
        ("tab\there\nnewline", "tab here newline-4e6f8a90"),
        ("", "job-4e6f8a90"),
        ("é" * 200, "é" * 119 + "-4e6f8a90"),
    ],
)
def test_vertex_display_name(name, expected):
    assert naming.vertex_display_name(name, UUID) == expected


@pytest.mark.parametrize(
    "value, k8s_same, gcp_same",
    [
        (UUID, True, True),
        ("ABC", True, False),  # GCP label values are lowercase
        ("a.b_c", True, False),
        ("-starts-with-dash", False, True),
        ("x" * 64, False, False),
        ("has space", False, False),
    ],
)
def test_label_values(value, k8s_same, gcp_same):
    k8s, gcp = naming.k8s_label_value(value), naming.gcp_label_value(value)
    assert (k8s == value) is k8s_same
    assert (gcp == value) is gcp_same
    assert len(k8s) <= 63 and re.match(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", k8s)
    assert len(gcp) <= 63 and re.match(r"^[a-z0-9_-]*$", gcp)


def test_selectors_and_filters():
    assert naming.k8s_job_selector(UUID) == f"training-platform/job-id={UUID}"
    assert naming.vertex_label_filter(UUID) == f'labels.job_id="{UUID}"'
