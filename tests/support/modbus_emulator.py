"""A Modbus RTU bus on this machine: pseudo-terminals, a fault-injecting bridge, a pymodbus slave.

    client (ModbusBus / minimalmodbus / a controller subprocess)
        opens `emu.port` = slave end of pty A
    bridge thread
        copies whole frames between the master ends of pty A and pty B; per slave
        address it can drop a request (a silent slave), corrupt a reply byte (bad
        CRC), cut a reply short, delay it; it counts requests and bytes; with
        `wire_baud` it holds each request for its time on a real wire and sends
        replies byte by byte at the wire's pace
    pymodbus 3.16 ModbusSerialServer (SimDevice/SimData) on the slave end of pty B,
        in its own asyncio loop in a background thread, one device per slave id

Requests to an address that no emulated slave has are dropped at the bridge, as
on a real RS485 bus where nobody answers: pymodbus 3.16.1's SimCore would
otherwise answer them with exception 0x04 (its KeyError for the missing device
ends in "Datastore unable to fulfill request"). Reading registers outside a
slave's image makes pymodbus answer with exception 0x02 (illegal data address).

Use it as a context manager (or start()/stop()); nothing leaks: both threads are
joined, the server's serial port and all four pty fds are closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import struct
import threading
import time
import tty
from dataclasses import dataclass, field
from decimal import Decimal

PZEM_REGISTERS = 10  # input registers 0x0000-0x0009
SDM_REGISTERS = 0x4C  # 0x0000-0x004B: up to export kWh; a real SDM has more, the profiles read 74
SDM_TOTAL_KWH = 0x0156  # total (import + export) kWh, outside the block the profiles read
MODELS = ("pzem004t", "sdm120", "sdm630")


def f32(value: float) -> float:
    """The float32 nearest to value, as a Python float (exactly what an SDM register pair holds)."""
    return struct.unpack(">f", struct.pack(">f", value))[0]


def f32_registers(value: float) -> list[int]:
    """A float32 as two registers, high word first (Eastron)."""
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [high, low]


def u32_low_first(value: int) -> list[int]:
    """A 32-bit unsigned as two registers, LOW word first (PZEM-004T)."""
    if not 0 <= value <= 0xFFFF_FFFF:
        raise ValueError(f"{value} does not fit 32 bits")
    return [value & 0xFFFF, value >> 16]


def crc16(frame: bytes) -> bytes:
    """Modbus RTU CRC, low byte first."""
    crc = 0xFFFF
    for b in frame:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


def _scaled(value, scale: int, what: str, bits: int) -> int:
    raw = round(Decimal(str(value)) * scale)
    if not 0 <= raw < 2 ** bits:
        raise ValueError(f"{what}={value} does not fit a {bits}-bit PZEM register")
    return int(raw)


def request_length(buf: bytes | bytearray) -> int | None:
    """Length of the request frame at the start of buf; None while incomplete."""
    if len(buf) < 2:
        return None
    fc = buf[1]
    if fc in (1, 2, 3, 4, 5, 6):
        n = 8
    elif fc in (15, 16):
        if len(buf) < 7:
            return None
        n = 9 + buf[6]
    elif fc == 0x42:  # PZEM energy reset: address, 0x42, CRC
        n = 4
    else:
        return len(buf)  # unknown function: pass on whatever arrived
    return n if len(buf) >= n else None


def reply_length(buf: bytes | bytearray) -> int | None:
    """Length of the reply frame at the start of buf; None while incomplete."""
    if len(buf) < 2:
        return None
    fc = buf[1]
    if fc & 0x80:
        n = 5
    elif fc in (1, 2, 3, 4):
        if len(buf) < 3:
            return None
        n = 5 + buf[2]
    elif fc in (5, 6, 15, 16):
        n = 8
    elif fc == 0x42:
        n = 4
    else:
        return len(buf)
    return n if len(buf) >= n else None


@dataclass
class Fault:
    kind: str  # "silent", "bad_crc", "short", "late"
    remaining: int | None = None  # requests it still applies to; None: until cleared
    delay_s: float = 0.0  # for "late": how long the reply is held back


@dataclass
class BusCounters:
    requests: dict[int, int] = field(default_factory=dict)  # every request seen on the wire, per address
    replies: dict[int, int] = field(default_factory=dict)  # replies passed on to the client, per address
    request_bytes: int = 0
    reply_bytes: int = 0  # as passed on to the client (after any fault)
    # ("req"|"rep", frame, time.monotonic() when it was passed on or dropped), the last 500 to 1000
    frames: list[tuple[str, bytes, float]] = field(default_factory=list)


class Pty:
    """A pseudo-terminal pair; the slave end in raw mode (else the line discipline mangles and echoes bytes)."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class Bridge(threading.Thread):
    """Copies frames between the client's pty and the server's pty, injecting faults per slave address."""

    STALE_S = 0.2  # a partial frame older than this is passed on as it is

    def __init__(self, client: Pty, server: Pty, present: set[int], wire_baud: int | None = None,
                 bits_per_char: int = 10, local_echo: bool = False):
        super().__init__(name="modbus-bridge", daemon=True)
        self.client, self.server = client, server
        self.present = present
        self.wire_baud = wire_baud
        self.bits_per_char = bits_per_char
        self.local_echo = local_echo  # an RS485 adapter that echoes what the client sends
        self.faults: dict[int, Fault] = {}
        self.counters = BusCounters()
        self.lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._late: list[tuple[float, bytes]] = []  # (due monotonic time, reply)


    def set_fault(self, address: int, kind: str | None, count: int | None = None, delay_s: float = 0.0) -> None:
        if kind not in (None, "silent", "bad_crc", "short", "late"):
            raise ValueError(f"unknown fault {kind!r}")
        with self.lock:
            if kind is None:
                self.faults.pop(address, None)
            else:
                self.faults[address] = Fault(kind, count, delay_s)

    def stop(self) -> None:
        self._stopping = True
        os.write(self._wake_w, b"x")


    def _fault_for(self, address: int, kind: str) -> Fault | None:
        with self.lock:
            f = self.faults.get(address)
            if f is None or f.kind != kind:
                return None
            if f.remaining is not None:
                f.remaining -= 1
                if f.remaining <= 0:
                    del self.faults[address]
            return f

    def _wire_wait(self, nbytes: int) -> None:
        if self.wire_baud:
            time.sleep(nbytes * self.bits_per_char / self.wire_baud)

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        try:
            os.write(fd, data)
        except BlockingIOError:
            pass  # nobody reads that end and its buffer is full: the bytes are lost, as on a wire

    def _log(self, kind: str, frame: bytes) -> None:
        frames = self.counters.frames
        frames.append((kind, frame, time.monotonic()))
        if len(frames) > 1000:
            del frames[:500]

    def _on_request(self, frame: bytes) -> None:
        address = frame[0]
        self._wire_wait(len(frame))
        with self.lock:
            self.counters.requests[address] = self.counters.requests.get(address, 0) + 1
            self.counters.request_bytes += len(frame)
            self._log("req", frame)
        if self.local_echo:
            self._write(self.client.master, frame)
        if address not in self.present or self._fault_for(address, "silent"):
            return
        self._write(self.server.master, frame)

    def _on_reply(self, frame: bytes) -> None:
        address = frame[0]
        if self._fault_for(address, "bad_crc"):
            i = min(3, len(frame) - 3)
            frame = frame[:i] + bytes([frame[i] ^ 0x5A]) + frame[i + 1:]
        if self._fault_for(address, "short"):
            frame = frame[:max(len(frame) // 2, 3)]
        late = self._fault_for(address, "late")
        if late:
            self._late.append((time.monotonic() + late.delay_s, frame))
            return
        self._pass_reply(frame)

    def _pass_reply(self, frame: bytes) -> None:
        with self.lock:
            self.counters.replies[frame[0]] = self.counters.replies.get(frame[0], 0) + 1
            self.counters.reply_bytes += len(frame)
        if not self.wire_baud:
            self._write(self.client.master, frame)
        else:
            # Byte by byte at the wire's pace: a client whose timeout is shorter than the frame sees part of it.
            char_s = self.bits_per_char / self.wire_baud
            start = time.monotonic()
            sent = 0
            while sent < len(frame):
                due = min(len(frame), int((time.monotonic() - start) / char_s))
                if due > sent:
                    self._write(self.client.master, frame[sent:due])
                    sent = due
                else:
                    time.sleep(max(char_s * (sent + 1) - (time.monotonic() - start), 0.0001))
        with self.lock:
            self._log("rep", frame)

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.client.master, selectors.EVENT_READ, "client")
        sel.register(self.server.master, selectors.EVENT_READ, "server")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        buffers = {"client": bytearray(), "server": bytearray()}
        since = {"client": 0.0, "server": 0.0}
        try:
            while not self._stopping:
                timeout = 0.05
                if self._late:
                    timeout = max(0.0, min(timeout, min(t for t, _ in self._late) - time.monotonic()))
                for key, _ in sel.select(timeout):
                    if key.data == "wake":
                        os.read(self._wake_r, 64)
                        continue
                    try:
                        data = os.read(key.fd, 4096)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:  # EIO: no slave fd open on that side; keep going
                        data = b""
                    if not data:
                        continue
                    buf = buffers[key.data]
                    if not buf:
                        since[key.data] = time.monotonic()
                    buf.extend(data)
                now = time.monotonic()
                for side, length, handle in (("client", request_length, self._on_request),
                                             ("server", reply_length, self._on_reply)):
                    buf = buffers[side]
                    while buf:
                        n = length(buf)
                        if n is None:
                            if now - since[side] > self.STALE_S:
                                n = len(buf)
                            else:
                                break
                        frame = bytes(buf[:n])
                        del buf[:n]
                        since[side] = now
                        handle(frame)
                due = [item for item in self._late if item[0] <= now]
                if due:
                    self._late = [item for item in self._late if item[0] > now]
                    for _, frame in due:
                        self._pass_reply(frame)
        finally:
            sel.close()
            os.close(self._wake_r)
            os.close(self._wake_w)


@dataclass
class _Slave:
    model: str
    values: dict


class ModbusEmulator:
    """Emulated meters on one RS485 bus. `slaves` maps slave address -> model (pzem004t, sdm120, sdm630)."""

    def __init__(self, slaves: dict[int, str], *, wire_baud: int | None = None, bits_per_char: int = 10,
                 local_echo: bool = False):
        for address, model in slaves.items():
            if model not in MODELS:
                raise ValueError(f"unknown model {model!r} (known: {', '.join(MODELS)})")
            if not 1 <= address <= 247:
                raise ValueError(f"slave address {address} outside 1-247")
        self.slaves = {a: _Slave(m, self._default_values(m)) for a, m in slaves.items()}
        self.wire_baud = wire_baud
        self.bits_per_char = bits_per_char
        self.local_echo = local_echo
        self._client: Pty | None = None
        self._server_pty: Pty | None = None
        self.bridge: Bridge | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server = None
        self._set_lock = threading.Lock()  # set_pzem/set_sdm from several test threads


    @property
    def port(self) -> str:
        """The device path a client opens (os.ttyname of the client-side slave end)."""
        if self._client is None:
            raise RuntimeError("the emulator is not running")
        return self._client.path

    def start(self) -> ModbusEmulator:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # exception replies are the point here
        self._client, self._server_pty = Pty(), Pty()
        self.bridge = Bridge(self._client, self._server_pty, set(self.slaves), self.wire_baud, self.bits_per_char,
                             self.local_echo)
        self.bridge.start()
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="modbus-server", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            self.stop()
            raise RuntimeError(f"the emulated Modbus server did not start: {failure[0] if failure else 'timeout'}")
        return self

    async def _serve(self) -> None:
        from pymodbus.server import ModbusSerialServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        devices = []
        for address, slave in self.slaves.items():
            blocks = [SimData(0, values=self._image(slave), datatype=DataType.REGISTERS)]
            if slave.model != "pzem004t":
                total = slave.values["import_kwh"] + slave.values["export_kwh"]
                blocks.append(SimData(SDM_TOTAL_KWH, values=f32_registers(total), datatype=DataType.REGISTERS))
            devices.append(SimDevice(address, simdata=blocks))
        self._server = ModbusSerialServer(devices, port=self._server_pty.path, baudrate=9600)
        await self._server.serve_forever(background=True)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            if self._server is not None and self._loop.is_running():
                asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            if not self._loop.is_closed() and not self._loop.is_running():
                self._loop.close()
            from pymodbus.server.base import ModbusBaseServer

            if ModbusBaseServer.active_server is self._server:
                ModbusBaseServer.active_server = None
        self._server, self._loop, self._thread = None, None, None
        if self.bridge is not None:
            self.bridge.stop()
            self.bridge.join(5)
            self.bridge = None
        for p in (self._client, self._server_pty):
            if p is not None:
                p.close()
        self._client = self._server_pty = None

    def __enter__(self) -> ModbusEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


    @staticmethod
    def _default_values(model: str) -> dict:
        if model == "pzem004t":
            return dict(voltage_v=230.0, current_a=0, power_w=0, energy_wh=0, frequency_hz=50.0, power_factor=1,
                        alarm=0)
        return dict(voltage_v=230.0, current_a=0.0, power_w=0.0, power_factor=1.0, frequency_hz=50.0,
                    import_kwh=0.0, export_kwh=0.0)

    @staticmethod
    def _image(slave: _Slave) -> list[int]:
        v = slave.values
        if slave.model == "pzem004t":
            regs = [_scaled(v["voltage_v"], 10, "voltage_v", 16),
                    *u32_low_first(_scaled(v["current_a"], 1000, "current_a", 32)),
                    *u32_low_first(_scaled(v["power_w"], 10, "power_w", 32)),
                    *u32_low_first(_scaled(v["energy_wh"], 1, "energy_wh", 32)),
                    _scaled(v["frequency_hz"], 10, "frequency_hz", 16),
                    _scaled(v["power_factor"], 100, "power_factor", 16),
                    0xFFFF if v["alarm"] else 0]
            assert len(regs) == PZEM_REGISTERS
            return regs
        regs = [0] * SDM_REGISTERS

        def put(offset: int, value: float) -> None:
            regs[offset:offset + 2] = f32_registers(value)

        put(0x0000, v["voltage_v"])
        put(0x0046, v["frequency_hz"])
        put(0x0048, v["import_kwh"])
        put(0x004A, v["export_kwh"])
        if slave.model == "sdm120":
            put(0x0006, v["current_a"])
            put(0x000C, v["power_w"])
            put(0x001E, v["power_factor"])
        else:  # sdm630: everything on phase 1, the other phases idle
            put(0x0002, v["voltage_v"])
            put(0x0004, v["voltage_v"])
            put(0x0006, v["current_a"])
            put(0x000C, v["power_w"])
            put(0x001E, v["power_factor"])
            put(0x0030, v["current_a"])  # sum of line currents
            put(0x0034, v["power_w"])  # total system power
            put(0x003E, v["power_factor"])  # total system power factor
        return regs

    def _call(self, coro_factory, timeout: float = 5.0):
        if self._loop is None or self._server is None:
            raise RuntimeError("the emulator is not running")
        return asyncio.run_coroutine_threadsafe(coro_factory(), self._loop).result(timeout)

    def _write_image(self, address: int) -> None:
        slave = self.slaves[address]
        image = self._image(slave)
        writes = [(0, image)]
        if slave.model != "pzem004t":
            writes.append((SDM_TOTAL_KWH, f32_registers(slave.values["import_kwh"] + slave.values["export_kwh"])))

        async def write():
            # No await inside suspends here, so a request never sees half an update.
            for start, regs in writes:
                error = await self._server.context.async_setValues(address, 4, start, regs)
                if error is not None:
                    raise RuntimeError(f"pymodbus refused to set registers of {address}: {error!r}")

        self._call(write)

    def _set(self, address: int, model_check: tuple[str, ...], values: dict) -> None:
        slave = self.slaves.get(address)
        if slave is None or slave.model not in model_check:
            raise ValueError(f"no {'/'.join(model_check)} at address {address}")
        unknown = set(values) - set(slave.values)
        if unknown:
            raise TypeError(f"unknown field(s) for {slave.model}: {', '.join(sorted(unknown))}")
        with self._set_lock:
            new = dict(slave.values, **{k: v for k, v in values.items() if v is not None})
            old, slave.values = slave.values, new
            try:
                self._image(slave)  # validate before touching the server
            except ValueError:
                slave.values = old
                raise
            self._write_image(address)

    def set_pzem(self, address: int, *, voltage_v=None, current_a=None, power_w=None, energy_wh=None,
                 frequency_hz=None, power_factor=None, alarm=None) -> None:
        """Set a PZEM-004T's values in physical units (scaled and rounded as the meter would)."""
        self._set(address, ("pzem004t",), dict(voltage_v=voltage_v, current_a=current_a, power_w=power_w,
                                               energy_wh=energy_wh, frequency_hz=frequency_hz,
                                               power_factor=power_factor, alarm=alarm))

    def set_sdm(self, address: int, *, voltage_v=None, current_a=None, power_w=None, power_factor=None,
                frequency_hz=None, import_kwh=None, export_kwh=None) -> None:
        """Set an SDM120/SDM630's values; each is stored as the nearest float32 (see f32())."""
        self._set(address, ("sdm120", "sdm630"), dict(voltage_v=voltage_v, current_a=current_a, power_w=power_w,
                                                      power_factor=power_factor, frequency_hz=frequency_hz,
                                                      import_kwh=import_kwh, export_kwh=export_kwh))

    def set_registers(self, address: int, start: int, values: list[int]) -> None:
        """Raw registers (the next set_pzem/set_sdm rewrites the whole image again)."""

        async def write():
            error = await self._server.context.async_setValues(address, 4, start, list(values))
            if error is not None:
                raise RuntimeError(f"pymodbus refused to set registers of {address}: {error!r}")

        self._call(write)

    def registers(self, address: int, start: int, count: int) -> list[int]:
        async def read():
            return await self._server.context.async_getValues(address, 4, start, count)

        return self._call(read)


    def fault(self, address: int, kind: str | None, count: int | None = None, delay_s: float = 0.0) -> None:
        """kind: "silent" (request dropped), "bad_crc", "short", "late" (reply held delay_s), None to clear.
        count: how many requests it applies to (None: until cleared)."""
        self.bridge.set_fault(address, kind, count, delay_s)

    def clear_faults(self) -> None:
        with self.bridge.lock:
            self.bridge.faults.clear()

    def requests(self, address: int | None = None) -> int:
        """Requests seen on the wire (to one address, or all)."""
        with self.bridge.lock:
            c = self.bridge.counters.requests
            return sum(c.values()) if address is None else c.get(address, 0)

    def replies(self, address: int | None = None) -> int:
        with self.bridge.lock:
            c = self.bridge.counters.replies
            return sum(c.values()) if address is None else c.get(address, 0)

    def wire_bytes(self) -> tuple[int, int]:
        """(request bytes, reply bytes) seen on the wire so far."""
        with self.bridge.lock:
            return self.bridge.counters.request_bytes, self.bridge.counters.reply_bytes

    def frames(self) -> list[tuple[str, bytes, float]]:
        """Recent frames on the wire: ("req" or "rep", bytes, time.monotonic())."""
        with self.bridge.lock:
            return list(self.bridge.counters.frames)
