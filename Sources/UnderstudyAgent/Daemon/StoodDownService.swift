import ServiceLifecycle

/// What a stood-down node runs: nothing, until a graceful shutdown.
struct StoodDownService: Service {
    func run() async throws {
        try? await gracefulShutdown()
    }
}
