"""Speaks gRPC to a daemon from a process of its own (the pytest process
must not load gRPC: it forks). Prints one JSON line.

    grpc_probe.py health ADDRESS                 the standard health Check of ""
    grpc_probe.py ready ADDRESS TOKEN            the readiness report
    grpc_probe.py call ADDRESS TOKEN METHOD HEX  a raw unary call with these request bytes
"""
import json
import sys

import grpc


def main(argv):
    cmd, address = argv[0], argv[1]
    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=20)
    if cmd == "health":
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        r = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=argv[2] if len(argv) > 2
                                                                                   else ""), timeout=10)
        return {"status": health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)}
    token = argv[2]
    md = (("authorization", f"Bearer {token}"),) if token else ()
    if cmd == "ready":
        from tierflow.remote import tierflow_remote_pb2 as pb
        fn = channel.unary_unary("/tierflow.remote.v1.Daemon/Ready", request_serializer=pb.ReadyRequest.SerializeToString,
                                 response_deserializer=pb.ReadyReply.FromString)
        try:
            return {"ok": True, "ready": json.loads(fn(pb.ReadyRequest(), metadata=md, timeout=10).json)}
        except grpc.RpcError as e:
            return {"ok": False, "code": e.code().name, "details": e.details()}
    if cmd == "call":
        fn = channel.unary_unary(f"/tierflow.remote.v1.Daemon/{argv[3]}", request_serializer=None,
                                 response_deserializer=None)
        try:
            return {"ok": True, "reply": fn(bytes.fromhex(argv[4]), metadata=md, timeout=10).hex()}
        except grpc.RpcError as e:
            return {"ok": False, "code": e.code().name, "details": e.details()}
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
