"""Only what pyproject.toml cannot say: the top-level templates/ folder ships in the package.

The email templates stay where the project's layout puts them (templates/, which a site copies
from); the wheel carries that same folder as ``digest/templates`` (package data mapped from it,
so there is one source and no second copy to keep in step). ``digest.config.BUILTIN_TEMPLATES``
finds it there when installed, and in the checkout otherwise.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["digest", "digest.*"]), "digest.templates"],
    package_dir={"digest.templates": "templates"},
)
