"""gRPC plumbing shared by every service: servers, the master client, tracing."""
