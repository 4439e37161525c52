"""Review bundles: a checksummed archive of a study that a reviewer verifies and re-runs.

Layout of ``NAME-STAMP.tar.gz`` (one top folder, the study folder's name)::

    NAME-STAMP/
      study.yaml plan.json manifest.json        the study as it ran
      runs/RUNID/...                            every run folder, raw files included
      results.csv results.parquet summary.csv effects.csv pareto.csv report/
      provenance/provenance.json                harness version, git revision, images, host,
                                                models (source, fingerprint), prompt files, source
      provenance/images/SLUG/                   Dockerfile, packages.txt (from the results),
                                                pip-freeze.txt (from the image, when present)
      provenance/redactions.txt                 each redacted value's file and field, no values
      images/ID12.tar.gz                        with --with-images: docker save of each image
      workload/...                              the study's prompt files, as the runs read them
      source/harness-REV12.tar.gz               git archive of the harness revision the runs used
      REVIEWERS.md                              the exact commands to verify and reproduce
      SHA256SUMS                                sha256sum -c compatible, every other file

Modules: ``create`` (making the archive), ``redact`` (the secrets policy of harness.secrets
applied to the bundle's files), ``provenance`` (images, packages, harness source),
``images`` (saving, checking by id and loading image archives), ``carry`` (prompt files and
the source archive), ``models`` (recorded model identities; finding and checking a reviewer's
copy), ``reimages`` (which image a reproduction runs in), ``reviewers`` (REVIEWERS.md),
``archive`` (judging an archive by its headers and extracting it safely), ``verify``
(checksums, schemas, runs, aggregates, carried files), ``reproduce`` (re-running a sample).
"""

from harness.bundle.archive import DEFAULT_LIMITS, Limits, extract
from harness.bundle.create import Created, create
from harness.bundle.layout import BundleInvalid
from harness.bundle.redact import Redaction
from harness.bundle.reproduce import Reproduction, reproduce, sample_runs
from harness.bundle.verify import Verified, verify, verify_root

__all__ = [
    "DEFAULT_LIMITS",
    "BundleInvalid",
    "Created",
    "Limits",
    "Redaction",
    "Reproduction",
    "Verified",
    "create",
    "extract",
    "reproduce",
    "sample_runs",
    "verify",
    "verify_root",
]
