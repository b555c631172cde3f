import CUnderstudyShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import UnderstudySystem

/// One PAGEMAP_SCAN walk over part of guest RAM: the written regions, collected (tracking re-armed
/// for them in the same step) or only looked at.
///
/// The walk visits every page-table entry of the range whether written or not: for file-backed
/// memory the kernel keeps a write-protect marker in every entry, so nothing is skipped, and the
/// walk grows with guest RAM (about 0.45 ms per GiB on this machine). Big guests split it across
/// `PagemapScanWorker`s.
struct PagemapScan: Sendable {
    let pagemap: Int32
    let range: Range<UInt64>
    let rearming: Bool

    /// The written regions of `range`, in order, using `buffer` for the kernel's answers.
    func run(buffer: inout [us_page_region]) throws(QEMUError) -> [us_page_region] {
        var found: [us_page_region] = []
        var start = range.lowerBound
        while start < range.upperBound {
            var walkEnd: UInt64 = 0
            let count = buffer.withUnsafeMutableBufferPointer {
                rearming ? us_pagemap_scan_written(pagemap, start, range.upperBound, $0.baseAddress, UInt64($0.count), &walkEnd)
                    : us_pagemap_peek_written(pagemap, start, range.upperBound, $0.baseAddress, UInt64($0.count), &walkEnd)
            }
            guard count >= 0 else { throw .tracking("PAGEMAP_SCAN: \(String(cString: strerror(errno)))") }
            found += buffer[0..<count]
            // Only a full answer means the kernel stopped early. Its `walk_end` cannot be trusted
            // after a complete walk: measured on 6.18, it still names the place where the kernel's
            // own staging buffer last filled, far behind the regions returned. Walking on from there
            // reported pages the guest wrote meanwhile a second time, out of order (a checkpoint
            // then carried a page twice), and made counts without re-arming count pages twice.
            guard count == buffer.count else { break }
            let next = max(walkEnd, buffer[count - 1].end)
            guard next > start else { break }
            start = next
        }
        return found
    }

    /// The address space one last-level page table maps.
    static let pageTableSpan: UInt64 = 2 << 20

    /// `range` cut into `parts` contiguous pieces on page-table boundaries (so two walkers never
    /// take the same page-table lock).
    static func split(_ range: Range<UInt64>, into parts: Int) -> [Range<UInt64>] {
        let alignment = pageTableSpan
        let step = ((UInt64(range.count) / UInt64(max(1, parts))) + alignment - 1) / alignment * alignment
        var pieces: [Range<UInt64>] = []
        var start = range.lowerBound
        while start < range.upperBound {
            let end = pieces.count == parts - 1 ? range.upperBound : min(range.upperBound, start + max(step, alignment))
            pieces.append(start..<end)
            start = end
        }
        return pieces
    }
}

/// A dedicated thread that walks one piece of guest RAM when handed a `PagemapScan`, at the
/// scheduling policy of the thread that handed it over (a pause runs under SCHED_FIFO, and a
/// walker left at normal priority would wait behind ordinary tasks on a busy host).
final class PagemapScanWorker: @unchecked Sendable {
    private struct Job: Sendable {
        let scan: PagemapScan
        let policy: Int32
        let priority: Int32
    }

    private let jobs = BlockingQueue<Job>(capacity: 1)
    private let results = BlockingQueue<Result<[us_page_region], QEMUError>>(capacity: 1)
    private var thread: JoinableThread?

    init(name: String) {
        thread = JoinableThread(name: name) { [jobs, results] in
            var buffer = [us_page_region](repeating: us_page_region(), count: 4096)
            var (policy, priority) = PagemapScanWorker.currentScheduling()
            while let job = jobs.pop() {
                if job.policy != policy || job.priority != priority {
                    var parameters = sched_param(sched_priority: job.priority)
                    // Refused without CAP_SYS_NICE: the walk then runs at normal priority.
                    if sched_setscheduler(0, job.policy, &parameters) == 0 { (policy, priority) = (job.policy, job.priority) }
                }
                results.push(Result { () throws(QEMUError) in try job.scan.run(buffer: &buffer) })
            }
        }
    }

    /// Starts `scan` on this worker's thread; `finish` returns its result.
    func start(_ scan: PagemapScan) {
        let (policy, priority) = Self.currentScheduling()
        jobs.push(Job(scan: scan, policy: policy, priority: priority))
    }

    func finish() throws(QEMUError) -> [us_page_region] {
        guard let result = results.pop() else { throw .tracking("the page-table walker stopped") }
        return try result.get()
    }

    /// Ends the thread (after the job it runs, if any).
    func stop() {
        jobs.close()
        thread?.join()
        thread = nil
    }

    private static func currentScheduling() -> (policy: Int32, priority: Int32) {
        var parameters = sched_param()
        _ = sched_getparam(0, &parameters)
        return (sched_getscheduler(0), parameters.sched_priority)
    }
}
