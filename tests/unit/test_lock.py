"""``make demo``, ``make test`` and CI install ``requirements.lock`` (pins with hashes); pyproject.toml
keeps the ranges for people who use guanhuai as a library. These tests fail when the two drift
apart: run ``make lock`` after changing a range."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"

# The machines the lock must serve: this one, and Python 3.11 on Linux on both architectures.
ENVIRONMENTS = {
    "this interpreter": default_environment(),
    **{
        f"3.11 linux {machine}": default_environment()
        | {
            "python_version": "3.11",
            "python_full_version": "3.11.7",
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "os_name": "posix",
            "platform_machine": machine,
        }
        for machine in ("x86_64", "aarch64")
    },
}


@dataclass(frozen=True)
class Pin:
    requirement: Requirement
    hashes: tuple[str, ...]

    @property
    def version(self) -> Version | None:
        specs = list(self.requirement.specifier)
        return Version(specs[0].version) if len(specs) == 1 and specs[0].operator == "==" else None

    def applies(self, environment: dict[str, str]) -> bool:
        marker = self.requirement.marker
        return marker is None or marker.evaluate(environment | {"extra": ""})


def read_lock(text: str) -> list[Pin]:
    """The requirements of a pip requirements file written with --generate-hashes."""
    pins = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        hashes = tuple(re.findall(r"--hash=(\S+)", line))
        spec = re.sub(r"--hash=\S+", "", line).strip()
        pins.append(Pin(Requirement(spec), hashes))
    return pins


def declared() -> list[Requirement]:
    """Every requirement the project declares: main, each extra, and the build backend."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject["project"]
    names = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        names += extra
    names += pyproject["build-system"]["requires"]
    return [Requirement(name) for name in names]


@pytest.fixture(scope="module")
def lock() -> list[Pin]:
    assert LOCK.is_file(), "requirements.lock is missing: run `make lock`"
    return read_lock(LOCK.read_text(encoding="utf-8"))


def pins_for(lock: list[Pin], name: str, environment: dict[str, str]) -> list[Pin]:
    return [p for p in lock if canonicalize_name(p.requirement.name) == canonicalize_name(name) and p.applies(environment)]


def test_the_lock_pins_every_package_to_one_version_with_its_hashes(lock: list[Pin]) -> None:
    loose = [str(p.requirement) for p in lock if p.version is None or not p.hashes]
    assert len(lock) > 1
    assert loose == []


@pytest.mark.parametrize("environment", ENVIRONMENTS, ids=list(ENVIRONMENTS))
def test_every_declared_dependency_is_pinned_within_its_range(lock: list[Pin], environment: str) -> None:
    env = ENVIRONMENTS[environment]
    drift = {}
    for requirement in declared():
        if requirement.marker is not None and not requirement.marker.evaluate(env | {"extra": ""}):
            continue
        pins = pins_for(lock, requirement.name, env)
        if len(pins) != 1:
            drift[str(requirement)] = f"{len(pins)} pins in the lock"
        elif not requirement.specifier.contains(pins[0].version, prereleases=True):
            drift[str(requirement)] = f"locked at {pins[0].version}"
    assert drift == {}, "pyproject.toml and requirements.lock disagree: run `make lock`"


def test_the_packages_an_extra_brings_are_pinned_too(lock: list[Pin]) -> None:
    """``psycopg[binary]`` needs psycopg-binary in the lock, not only psycopg (read from the
    installed package's metadata, which the lock installed)."""
    env = ENVIRONMENTS["this interpreter"]
    missing = []
    for requirement in declared():
        for extra in requirement.extras:
            try:
                brought = importlib.metadata.requires(requirement.name) or []
            except importlib.metadata.PackageNotFoundError:
                missing.append(f"{requirement.name} (not installed)")
                continue
            for line in map(Requirement, brought):
                wanted = line.marker is not None and line.marker.evaluate(env | {"extra": extra})
                if wanted and not line.marker.evaluate(env | {"extra": ""}) and not pins_for(lock, line.name, env):
                    missing.append(f"{requirement.name}[{extra}] -> {line.name}")
    assert missing == []
