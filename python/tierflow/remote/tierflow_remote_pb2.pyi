from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KIND_UNSPECIFIED: _ClassVar[Kind]
    SUB: _ClassVar[Kind]
    KERNEL: _ClassVar[Kind]
    NATIVE: _ClassVar[Kind]
    ORCH: _ClassVar[Kind]

class Tag(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TAG_UNSPECIFIED: _ClassVar[Tag]
    INPUT: _ClassVar[Tag]
    OUTPUT: _ClassVar[Tag]
    INOUT: _ClassVar[Tag]
    NO_DEP: _ClassVar[Tag]
KIND_UNSPECIFIED: Kind
SUB: Kind
KERNEL: Kind
NATIVE: Kind
ORCH: Kind
TAG_UNSPECIFIED: Tag
INPUT: Tag
OUTPUT: Tag
INOUT: Tag
NO_DEP: Tag

class Versions(_message.Message):
    __slots__ = ("protocol", "tierflow", "python", "cloudpickle", "numpy", "pickle_protocol")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TIERFLOW_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    CLOUDPICKLE_FIELD_NUMBER: _ClassVar[int]
    NUMPY_FIELD_NUMBER: _ClassVar[int]
    PICKLE_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    protocol: int
    tierflow: str
    python: str
    cloudpickle: str
    numpy: str
    pickle_protocol: int
    def __init__(self, protocol: _Optional[int] = ..., tierflow: _Optional[str] = ..., python: _Optional[str] = ..., cloudpickle: _Optional[str] = ..., numpy: _Optional[str] = ..., pickle_protocol: _Optional[int] = ...) -> None: ...

class HelloRequest(_message.Message):
    __slots__ = ("client",)
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    client: Versions
    def __init__(self, client: _Optional[_Union[Versions, _Mapping]] = ...) -> None: ...

class HelloReply(_message.Message):
    __slots__ = ("daemon", "chips", "sub_workers", "chips_alive", "sub_workers_alive", "max_inline_bytes", "chunk_bytes", "arena_bytes", "host", "data_port")
    DAEMON_FIELD_NUMBER: _ClassVar[int]
    CHIPS_FIELD_NUMBER: _ClassVar[int]
    SUB_WORKERS_FIELD_NUMBER: _ClassVar[int]
    CHIPS_ALIVE_FIELD_NUMBER: _ClassVar[int]
    SUB_WORKERS_ALIVE_FIELD_NUMBER: _ClassVar[int]
    MAX_INLINE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    ARENA_BYTES_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    DATA_PORT_FIELD_NUMBER: _ClassVar[int]
    daemon: Versions
    chips: int
    sub_workers: int
    chips_alive: int
    sub_workers_alive: int
    max_inline_bytes: int
    chunk_bytes: int
    arena_bytes: int
    host: str
    data_port: int
    def __init__(self, daemon: _Optional[_Union[Versions, _Mapping]] = ..., chips: _Optional[int] = ..., sub_workers: _Optional[int] = ..., chips_alive: _Optional[int] = ..., sub_workers_alive: _Optional[int] = ..., max_inline_bytes: _Optional[int] = ..., chunk_bytes: _Optional[int] = ..., arena_bytes: _Optional[int] = ..., host: _Optional[str] = ..., data_port: _Optional[int] = ...) -> None: ...

class HasRequest(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class HasReply(_message.Message):
    __slots__ = ("missing",)
    MISSING_FIELD_NUMBER: _ClassVar[int]
    missing: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, missing: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("kind", "key", "payload", "name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    kind: Kind
    key: bytes
    payload: bytes
    name: str
    def __init__(self, kind: _Optional[_Union[Kind, str]] = ..., key: _Optional[bytes] = ..., payload: _Optional[bytes] = ..., name: _Optional[str] = ...) -> None: ...

class PushReply(_message.Message):
    __slots__ = ("key", "stored")
    KEY_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    stored: bool
    def __init__(self, key: _Optional[bytes] = ..., stored: _Optional[bool] = ...) -> None: ...

class OpenRequest(_message.Message):
    __slots__ = ("name", "weight", "chips", "sub_workers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHIPS_FIELD_NUMBER: _ClassVar[int]
    SUB_WORKERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: int
    chips: int
    sub_workers: int
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[int] = ..., chips: _Optional[int] = ..., sub_workers: _Optional[int] = ...) -> None: ...

class OpenReply(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: str
    def __init__(self, session: _Optional[str] = ...) -> None: ...

class AttachRequest(_message.Message):
    __slots__ = ("session", "interval_s")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    session: str
    interval_s: float
    def __init__(self, session: _Optional[str] = ..., interval_s: _Optional[float] = ...) -> None: ...

class Beat(_message.Message):
    __slots__ = ("seq", "state")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    state: str
    def __init__(self, seq: _Optional[int] = ..., state: _Optional[str] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("tag", "dtype", "shape", "nbytes", "data", "staged")
    TAG_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    STAGED_FIELD_NUMBER: _ClassVar[int]
    tag: Tag
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    nbytes: int
    data: bytes
    staged: str
    def __init__(self, tag: _Optional[_Union[Tag, str]] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., nbytes: _Optional[int] = ..., data: _Optional[bytes] = ..., staged: _Optional[str] = ...) -> None: ...

class Scalar(_message.Message):
    __slots__ = ("i", "f")
    I_FIELD_NUMBER: _ClassVar[int]
    F_FIELD_NUMBER: _ClassVar[int]
    i: int
    f: float
    def __init__(self, i: _Optional[int] = ..., f: _Optional[float] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("session", "orch", "tensors", "scalars", "name")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ORCH_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    SCALARS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    session: str
    orch: bytes
    tensors: _containers.RepeatedCompositeFieldContainer[Tensor]
    scalars: _containers.RepeatedCompositeFieldContainer[Scalar]
    name: str
    def __init__(self, session: _Optional[str] = ..., orch: _Optional[bytes] = ..., tensors: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., scalars: _Optional[_Iterable[_Union[Scalar, _Mapping]]] = ..., name: _Optional[str] = ...) -> None: ...

class Output(_message.Message):
    __slots__ = ("index", "data", "staged")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    STAGED_FIELD_NUMBER: _ClassVar[int]
    index: int
    data: bytes
    staged: str
    def __init__(self, index: _Optional[int] = ..., data: _Optional[bytes] = ..., staged: _Optional[str] = ...) -> None: ...

class Failure(_message.Message):
    __slots__ = ("kind", "message", "traceback", "types", "exception")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    EXCEPTION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    message: str
    traceback: str
    types: str
    exception: bytes
    def __init__(self, kind: _Optional[str] = ..., message: _Optional[str] = ..., traceback: _Optional[str] = ..., types: _Optional[str] = ..., exception: _Optional[bytes] = ...) -> None: ...

class RunReply(_message.Message):
    __slots__ = ("ok", "value", "failure", "outputs")
    OK_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    value: bytes
    failure: Failure
    outputs: _containers.RepeatedCompositeFieldContainer[Output]
    def __init__(self, ok: _Optional[bool] = ..., value: _Optional[bytes] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., outputs: _Optional[_Iterable[_Union[Output, _Mapping]]] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class UploadReply(_message.Message):
    __slots__ = ("staged", "nbytes")
    STAGED_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    staged: str
    nbytes: int
    def __init__(self, staged: _Optional[str] = ..., nbytes: _Optional[int] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("session", "staged")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    STAGED_FIELD_NUMBER: _ClassVar[int]
    session: str
    staged: str
    def __init__(self, session: _Optional[str] = ..., staged: _Optional[str] = ...) -> None: ...

class ReadyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReadyReply(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: str
    def __init__(self, session: _Optional[str] = ...) -> None: ...

class StatsReply(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class TraceRequest(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: str
    def __init__(self, session: _Optional[str] = ...) -> None: ...

class TraceReply(_message.Message):
    __slots__ = ("json", "daemon_now_ns")
    JSON_FIELD_NUMBER: _ClassVar[int]
    DAEMON_NOW_NS_FIELD_NUMBER: _ClassVar[int]
    json: str
    daemon_now_ns: int
    def __init__(self, json: _Optional[str] = ..., daemon_now_ns: _Optional[int] = ...) -> None: ...
