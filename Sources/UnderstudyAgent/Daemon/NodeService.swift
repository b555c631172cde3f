import Foundation
import ServiceLifecycle
import Synchronization
import UnderstudyTransport
import UnixSignals

/// `understudy run` as a service of swift-service-lifecycle: the pair node runs on a thread of
/// its own (its loops block); a graceful shutdown (SIGTERM, SIGINT) becomes `PairNode.shutDown`,
/// which hands a running VM to the backup first when `node.on_stop` says so; SIGHUP reloads the
/// configuration file.
public final class NodeService: Service, @unchecked Sendable {
    private let node: PairNode
    private let start: PairNode.Start
    private let onStop: StopAction
    private let stop: StopSignal
    private let reloader: ConfigurationReloader
    private let failure = Mutex<Error?>(nil)

    public init(node: PairNode, start: PairNode.Start, onStop: StopAction, stop: StopSignal, reloader: ConfigurationReloader) {
        self.node = node
        self.start = start
        self.onStop = onStop
        self.stop = stop
        self.reloader = reloader
    }

    public func run() async throws {
        let finished = StopSignal(signals: [])
        let thread = JoinableThread(name: "pair-node") { [self] in
            do {
                try node.run(startingAs: start)
            } catch {
                failure.withLock { $0 = error }
            }
            finished.trigger("done")
        }
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { [reloader] in
                    for await _ in await UnixSignalsSequence(trapping: .sighup) { reloader.reload() }
                }
                // The node's end, awaited without holding a thread of the cooperative pool.
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    Thread.detachNewThread {
                        finished.wait()
                        continuation.resume()
                    }
                }
                group.cancelAll()
            }
        } onGracefulShutdown: { [node, onStop] in
            // A handover can take seconds: not on the caller's (cooperative) thread.
            Thread.detachNewThread { node.shutDown(onStop) }
        }
        thread.join()
        if let error = failure.withLock({ $0 }) { throw error }
        if let why = stop.why, why != "terminated", why != "interrupted" { throw NodeServiceError(reason: why) }
    }
}

/// The node stopped for another reason than a requested shutdown (QEMU exited, for one).
public struct NodeServiceError: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { reason }
}
