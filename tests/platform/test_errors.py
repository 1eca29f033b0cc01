"""The platform's error types: each is a PlatformError (one line, exit 2) and keeps the
built-in base that callers catch."""

from __future__ import annotations

import pytest

from sparse_rcnn.platform.checkpoints.mmdet import CheckpointError
from sparse_rcnn.platform.cli.main import one_line
from sparse_rcnn.platform.data.coco import AnnotationError
from sparse_rcnn.platform.data.image_io import ImageDecodeError
from sparse_rcnn.platform.errors import InputError, MissingFileError, PlatformError
from sparse_rcnn.platform.orchestration.cluster import ResourceError
from sparse_rcnn.platform.orchestration.package import PackagingError
from sparse_rcnn.platform.orchestration.study_record import StudyError
from sparse_rcnn.platform.orchestration.submit import SubmitError
from sparse_rcnn.platform.orchestration.train import JobFailed
from sparse_rcnn.platform.spec.load import SpecError


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (InputError, ValueError),
        (MissingFileError, FileNotFoundError),
        (SpecError, ValueError),
        (CheckpointError, ValueError),
        (AnnotationError, ValueError),
        (ImageDecodeError, RuntimeError),
        (StudyError, RuntimeError),
        (SubmitError, RuntimeError),
        (ResourceError, RuntimeError),
        (PackagingError, RuntimeError),
        (JobFailed, RuntimeError),
    ],
)
def test_platform_errors_keep_their_base(cls, base):
    assert issubclass(cls, PlatformError) and issubclass(cls, base)
    assert str(cls("a message")) == "a message"


def test_a_message_is_printed_on_one_line():
    assert one_line("refused:\n  first reason\n\tsecond") == "refused: first reason second"
