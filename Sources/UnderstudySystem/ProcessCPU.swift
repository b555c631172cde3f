import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// This process's CPU time (user and system, all threads) since a starting point. Benchmarks on
/// a shared host divide work by it: unlike wall time, it hardly grows when other processes take
/// the cores.
public struct ProcessCPU: Sendable {
    private let start: Double

    public init() { start = ProcessCPU.now() }

    /// CPU seconds since `init`.
    public var elapsed: Double { ProcessCPU.now() - start }

    private static func now() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}

extension ProcessCPU {
    /// CPU time per thread name since a starting point: where a benchmark's CPU went (which
    /// thread would limit it on a host with more cores than the benchmark has threads).
    public struct ByThread: Sendable {
        private let start: [String: Double]

        public init() { start = ProcessCPUTime.secondsByThreadName() }

        /// CPU seconds per thread name since `init`, of the threads alive now: a thread that ended
        /// meanwhile is missing, so take it before the threads measured end.
        public var elapsed: [String: Double] {
            ProcessCPUTime.secondsByThreadName().reduce(into: [:]) { result, thread in
                result[thread.key] = max(0, thread.value - start[thread.key, default: 0])
            }
        }
    }
}
