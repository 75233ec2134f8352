"""One family of exceptions for everything facerec raises.

The library raises these and never prints or exits; the CLI turns them into a
single stderr line and an exit code, the app into ``st.error``.
"""

from __future__ import annotations


class FaceRecError(Exception):
    """Base class of every error facerec raises on purpose."""

    exit_code = 1


class ImageError(FaceRecError):
    """A file is missing, empty, truncated, unreadable or not an image."""

    exit_code = 2


class NoFaceError(FaceRecError):
    """A photo that needs exactly one face has none."""

    exit_code = 3


class ManyFacesError(FaceRecError):
    """A photo that needs exactly one face has several."""

    exit_code = 3


class InvalidNameError(FaceRecError):
    """A person's name is unsafe or malformed."""

    exit_code = 2


class PersonNotFoundError(FaceRecError):
    """The named person is not enrolled."""

    exit_code = 4


class PersonExistsError(FaceRecError):
    """A rename would overwrite an enrolled person."""

    exit_code = 4


class EmptyGalleryError(FaceRecError):
    """Matching was asked for but nobody is enrolled."""

    exit_code = 5


class ModelUnavailableError(FaceRecError):
    """Pretrained weights or a head could not be found or obtained."""

    exit_code = 6


class ConfigError(FaceRecError):
    """A setting has an invalid value (unknown backbone, threshold out of range...)."""

    exit_code = 2


class MetadataError(FaceRecError):
    """An XMP sidecar is malformed, or cannot be read or written (the file is left as it was)."""

    exit_code = 2


class ClusterError(FaceRecError):
    """A cluster file is missing or unreadable, or has no group with the given label."""

    exit_code = 4


class ForgetIncompleteError(FaceRecError):
    """A person was forgotten, but some leftover could not be removed (the message says which;
    ``report``, when set, is the :class:`facerec.people.ForgetReport` of what was removed and
    its ``problems``: what is left)."""

    exit_code = 7
    report: object | None = None


class GalleryBusyError(FaceRecError):
    """The gallery is being prepared (re-embedded) and the caller chose not to wait."""

    exit_code = 8


class DiskFullError(FaceRecError):
    """A write failed because the disk (or quota) is full; nothing was changed."""

    exit_code = 9


class ConfirmationNeededError(FaceRecError):
    """An action looks like a mistake (a look-alike name, a face like someone else's...);
    it is done only when confirmed (``--yes`` on the CLI, a tick in the app). ``concerns``
    lists what to confirm, one sentence each."""

    exit_code = 10

    def __init__(self, message: str, concerns: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.concerns = tuple(concerns) or (message,)
