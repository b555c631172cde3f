import Foundation
import ServiceLifecycle
import Synchronization
import UnderstudySystem
import UnderstudyTransport
import UnixSignals

/// The pair node as a service of swift-service-lifecycle: the node runs on a thread of its own
/// (its loops block); a graceful shutdown (SIGTERM, SIGINT) becomes `PairNode.shutDown`, which
/// hands a running VM to the backup first when `onStop` says so; with a reloader, SIGHUP reloads
/// the configuration file.
public final class NodeService: Service, Sendable {
    private let node: PairNode
    private let start: PairNode.Start
    private let onStop: StopAction
    private let stop: StopSignal
    private let reloader: ConfigurationReloader?
    private let failure = Mutex<Error?>(nil)

    /// - Parameter reloader: what SIGHUP does; nil leaves SIGHUP alone.
    public init(node: PairNode, start: PairNode.Start, onStop: StopAction, stop: StopSignal, reloader: ConfigurationReloader?) {
        self.node = node
        self.start = start
        self.onStop = onStop
        self.stop = stop
        self.reloader = reloader
    }

    /// Runs the node until it ends.
    /// - Throws: what the node threw, or `NodeServiceError` when it stopped for a reason other
    ///   than a requested shutdown.
    public func run() async throws {
        let finished = Latch()
        let thread = JoinableThread(name: "pair-node") { [self] in
            do {
                try node.run(startingAs: start)
            } catch {
                failure.withLock { $0 = error }
            }
            finished.trigger()
        }
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                if let reloader {
                    group.addTask {
                        for await _ in await UnixSignalsSequence(trapping: .sighup) { reloader.reload() }
                    }
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
        if let reason = stop.reason, !reason.isRequested { throw NodeServiceError(reason: reason) }
    }
}
