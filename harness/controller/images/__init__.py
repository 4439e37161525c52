"""Backend images: which recipe builds each one, and the build itself (online or offline).

Every image installs this package from a wheel built on the host, so the image holds exactly
the source it was built from. Offline builds start from a base image made with debootstrap
(no registry) and install every Python package from a wheelhouse the host downloads first;
this is also how images are built for air-gapped clusters. How a backend's image is built is
its spec's ``recipe`` (harness/backends/NAME); this package knows no backend by name.
"""

from harness.controller.images.build import BuiltImage, build_image
from harness.controller.images.recipes import dockerfile_path, image_tag, variant

__all__ = ["BuiltImage", "build_image", "dockerfile_path", "image_tag", "variant"]
