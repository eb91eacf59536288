"""A fake of the `gpiod` package (libgpiod v2's Python binding) and of the kernel behind it.

`FakeGpiod` stands for the module: pass it as `gpiod=` to hardware/gpiod_relay.py. It has the part of the
binding's API that payg uses, with the same names and signatures (`Chip`, `request_lines`, `LineSettings`,
`line.Direction`, `line.Value`, `is_gpiochip_device`, `ChipClosedError`, `RequestReleasedError`), and keeps
each line's state as the kernel does:

- a line is held by one request at a time: a second request gets OSError EBUSY, as from the ioctl;
- an offset beyond the chip's lines is refused (ValueError, as the binding's `line_offset_from_id`);
- a line requested as an output takes its level in the request itself: the physical level is the logical
  `output_value` inverted when `active_low`, and every level a line is driven to is kept in `driven`, so
  a test sees a glitch;
- a released request (by `release()` or by being garbage-collected, as the binding's finalizer does)
  frees its lines: with `persist_outputs` (Raspberry Pi OS's default) an output keeps its level, without
  it (`dtparam=strict_gpiod`, mainline kernels) the line turns into an input left to its pull (`None`:
  floating);
- a missing chip is FileNotFoundError, a file that is not a chip OSError ENODEV, as `Chip(path)` raises.

`calls` records every request and every value set, with readable names.
"""

from __future__ import annotations

import enum
import errno
import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any


class Direction(enum.Enum):
    AS_IS = 1
    INPUT = 2
    OUTPUT = 3


class Value(enum.Enum):
    INACTIVE = 0
    ACTIVE = 1

    def __bool__(self) -> bool:
        return self is Value.ACTIVE


@dataclass(repr=False)
class LineSettings:
    direction: Direction = Direction.AS_IS
    active_low: bool = False
    output_value: Value = Value.INACTIVE


@dataclass(frozen=True)
class ChipInfo:
    name: str
    label: str
    num_lines: int


class ChipClosedError(Exception):
    def __init__(self) -> None:
        super().__init__("I/O operation on closed chip")


class RequestReleasedError(Exception):
    def __init__(self) -> None:
        super().__init__("GPIO lines have been released")


@dataclass
class FakeLine:
    """One line as the kernel keeps it."""

    pull: int | None = None           # the level an input settles to (None: floating)
    direction: str = "input"
    level: int | None = None          # the physical level on the pin
    active_low: bool = False
    consumer: str | None = None       # who holds it (None: free); the kernel keeps no reference to the request

    def __post_init__(self) -> None:
        self.level = self.pull


@dataclass
class FakeChipDevice:
    path: str
    label: str
    lines: list[FakeLine]


class FakeGpiod:
    """The `gpiod` module and the kernel's GPIO chips behind it."""

    def __init__(self, persist_outputs: bool = True):
        self.persist_outputs = persist_outputs
        self.chips: dict[str, FakeChipDevice] = {}
        self.calls: list[tuple] = []
        self.driven: list[tuple[str, int, int]] = []  # every (chip, offset, level) an output was driven to
        self.fail_set_value: OSError | None = None
        self.fail_request: OSError | None = None
        self.line = SimpleNamespace(Direction=Direction, Value=Value)
        self.LineSettings = LineSettings
        self.ChipClosedError = ChipClosedError
        self.RequestReleasedError = RequestReleasedError
        self.__version__ = "2.5.0"

    def add_chip(self, path: str, label: str, num_lines: int = 54, pulls: dict[int, int] | None = None) -> None:
        self.chips[str(path)] = FakeChipDevice(str(path), label,
                                               [FakeLine(pull=(pulls or {}).get(i)) for i in range(num_lines)])

    def state(self, path: str, offset: int) -> FakeLine:
        return self.chips[str(path)].lines[offset]

    def is_gpiochip_device(self, path: str) -> bool:
        return str(path) in self.chips

    def Chip(self, path: str) -> FakeChip:  # the binding's class, called as gpiod.Chip(path)
        return FakeChip(self, str(path))

    def request_lines(self, path: str, config: dict, consumer: str | None = None,
                      event_buffer_size: int | None = None, output_values: dict | None = None) -> FakeLineRequest:
        with self.Chip(path) as chip:
            return chip.request_lines(config, consumer, event_buffer_size, output_values)

    def _drive(self, path: str, offset: int, line: FakeLine, value: Value) -> None:
        line.level = int(bool(value)) ^ int(line.active_low)
        self.driven.append((path, offset, line.level))

    def _free(self, path: str, offset: int) -> None:
        line = self.state(path, offset)
        line.consumer = None
        if not self.persist_outputs:
            line.direction, line.level, line.active_low = "input", line.pull, False


class FakeChip:
    def __init__(self, gpiod: FakeGpiod, path: str):
        if path not in gpiod.chips:
            if os.path.exists(path):
                raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
        self._gpiod: FakeGpiod | None = gpiod
        self.path = path

    def __enter__(self) -> FakeChip:
        self._open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._gpiod = None

    def _open(self) -> FakeGpiod:
        if self._gpiod is None:
            raise ChipClosedError()
        return self._gpiod

    def get_info(self) -> ChipInfo:
        device = self._open().chips[self.path]
        return ChipInfo(os.path.basename(self.path), device.label, len(device.lines))

    def request_lines(self, config: dict, consumer: str | None = None, event_buffer_size: int | None = None,
                      output_values: dict | None = None) -> FakeLineRequest:
        gpiod = self._open()
        lines = gpiod.chips[self.path].lines
        wanted: dict[int, LineSettings] = {}
        for offset, settings in config.items():
            if not isinstance(offset, int) or not 0 <= offset < len(lines):
                raise ValueError("line offset of out range")
            if offset in wanted:
                raise ValueError(f"line must be configured exactly once - offset {offset} repeats")
            wanted[offset] = settings or LineSettings()
        gpiod.calls.append(("request", self.path, consumer, {
            o: (s.direction.name, s.active_low, s.output_value.name) for o, s in wanted.items()}))
        if gpiod.fail_request is not None:
            raise gpiod.fail_request
        if any(lines[o].consumer is not None for o in wanted):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        request = FakeLineRequest(gpiod, self.path, list(wanted))
        for offset, settings in wanted.items():
            line = lines[offset]
            line.consumer, line.active_low = consumer or "?", settings.active_low
            if settings.direction is Direction.OUTPUT:
                line.direction = "output"
                value = (output_values or {}).get(offset, settings.output_value)
                gpiod._drive(self.path, offset, line, value)
            elif settings.direction is Direction.INPUT:
                line.direction, line.level = "input", line.pull
        return request


class FakeLineRequest:
    def __init__(self, gpiod: FakeGpiod, path: str, offsets: list[int]):
        self._gpiod: FakeGpiod | None = gpiod
        self.chip_name = os.path.basename(path)
        self.path = path
        self.offsets = offsets

    def __bool__(self) -> bool:
        return self._gpiod is not None

    def _live(self) -> FakeGpiod:
        if self._gpiod is None:
            raise RequestReleasedError()
        return self._gpiod

    def set_value(self, line: int, value: Any) -> None:
        gpiod = self._live()
        if line not in self.offsets:
            raise ValueError(f"unknown line: {line}")
        if not isinstance(value, Value):
            raise TypeError(f"a gpiod.line.Value, got {value!r}")
        gpiod.calls.append(("set_value", self.path, line, value.name))
        if gpiod.fail_set_value is not None:
            raise gpiod.fail_set_value
        state = gpiod.state(self.path, line)
        if state.direction != "output":
            raise OSError(errno.EPERM, os.strerror(errno.EPERM))
        gpiod._drive(self.path, line, state, value)

    def release(self) -> None:
        if self._gpiod is None:
            return
        gpiod, self._gpiod = self._gpiod, None
        gpiod.calls.append(("release", self.path, tuple(self.offsets)))
        for offset in self.offsets:
            gpiod._free(self.path, offset)

    def __del__(self) -> None:
        self.release()  # the binding's finalizer releases a request nobody holds any more
