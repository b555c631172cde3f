import Foundation
import Logging
import UnderstudyAgent
import UnderstudyHarness
import UnderstudyProtocol
import UnderstudySystem
import UnderstudyTransport

/// `understudy-bench`: measures the foundation's speed and writes the results as JSON.
///
/// Usage: understudy-bench [--quick] [--vm | --pauses | --output-commit | --failover | --wan | --pgbench | --soak N [--seed S]]
///        [--cases random,mixed] [--output PATH]
///        (`--pgbench [--replication key=value,...] [--without-interval]`: see PGBench's init)
/// `--vm` checkpoints a real QEMU guest (see VMBench) instead of the foundation benches (`--vm
/// --device-state`: only its device-state bytes per checkpoint, whole against delta; `--vm
/// --memory-sizes 512M,2G,4G,8G`: pause, initial sync and backup memory per guest size, see VMSizeBench);
/// `--pauses` the checkpoint pauses of a 1 GiB guest booting, dirtying and filling its page cache,
/// before and after their bounds (see PauseBench);
/// `--output-commit` measures a guest service's request latency through the output gate and its
/// disk write throughput, protected versus unprotected (see OutputCommitBench; with `--gate-rules N`
/// instead the cost of N gate-policy rules per frame and at the guest's full rate); `--failover`
/// the time from a primary's death to the backup's first reply (see FailoverBench); `--wan` a
/// disaster-recovery replica over an emulated thin link (see WANBench); `--pgbench` PostgreSQL's
/// pgbench on the Debian guest, bare and protected (see PGBench); `--soak N` N random faults on the
/// counter guest, checked for lost output and two active copies (see SoakBench).
/// Everything is measured in one run on this machine, so ratios (end to end / raw TLS) compare
/// like with like even on a noisy shared host.
@main
struct Bench {
    static func main() throws {
        var arguments = Array(CommandLine.arguments.dropFirst())
        let quick = arguments.contains("--quick")
        let vm = arguments.contains("--vm")
        let pauses = arguments.contains("--pauses")
        let outputCommit = arguments.contains("--output-commit")
        let failover = arguments.contains("--failover")
        let wan = arguments.contains("--wan")
        let pgbench = arguments.contains("--pgbench")
        arguments.removeAll { ["--quick", "--vm", "--pauses", "--output-commit", "--failover", "--wan", "--pgbench"].contains($0) }
        // `--cases random,mixed`: only the end-to-end cases whose names contain one of these words.
        let cases = arguments.firstIndex(of: "--cases").flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil }?
            .split(separator: ",").map(String.init)
        var output = pgbench ? "bench-results/pgbench.json" : wan ? "bench-results/wan.json" : failover ? "bench-results/failover.json"
            : outputCommit ? (arguments.contains("--gate-rules") ? "bench-results/gate-policy.json" : "bench-results/output-commit.json") : vm ? "bench-results/vm.json" : pauses ? "bench-results/pauses.json"
            : "bench-results/foundation.json"
        if let flag = arguments.firstIndex(of: "--output"), flag + 1 < arguments.count { output = arguments[flag + 1] }
        if let flag = arguments.firstIndex(of: "--soak") {
            guard flag + 1 < arguments.count, let count = Int(arguments[flag + 1]), count > 0 else { throw BenchError("--soak needs a number of trials") }
            let seed = try arguments.firstIndex(of: "--seed").map { flag in
                guard flag + 1 < arguments.count, let seed = UInt64(arguments[flag + 1]) else { throw BenchError("--seed needs a number") }
                return seed
            } ?? UInt64.random(in: .min ... .max)
            if !arguments.contains("--output") { output = "bench-results/soak.json" }
            let report = try SoakBench(count: count, seed: seed, output: output).run()
            print(String(decoding: try Data(contentsOf: URL(fileURLWithPath: output)), as: UTF8.self))
            print("wrote \(output): \(report.trials) trials, lost acknowledged output in \(report.lostAcknowledgedOutput), "
                  + "counter regressions in \(report.counterRegressions), two active copies in \(report.twoActiveCopies)")
            return
        }

        var logger = Logger(label: "bench")
        logger.logLevel = .error
        var results: [String: Any] = [
            "machine": ["cores": ProcessInfo.processInfo.activeProcessorCount,
                        "memoryBytes": ProcessInfo.processInfo.physicalMemory],
            "date": ISO8601DateFormatter().string(from: Date()),
            "quick": quick,
        ]
        if pgbench {
            // Its figures at the top level: tps_ratio and round_trip_added_ms_p50 beside the configurations.
            // `--replication key=value,...`: more `[replication]` keys for the output-triggered configuration.
            let settings: [(key: String, value: String)] = try arguments.firstIndex(of: "--replication").map { flag in
                guard flag + 1 < arguments.count else { throw BenchError("--replication needs key=value pairs") }
                return try arguments[flag + 1].split(separator: ",").map { pair -> (key: String, value: String) in
                    let parts = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                    guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { throw BenchError("--replication: \(pair) is not key=value") }
                    return (key: parts[0], value: parts[1])
                }
            } ?? []
            let bench = PGBench(quick: quick, settings: settings, withInterval: !arguments.contains("--without-interval"))
            results.merge(try bench.run(logger: logger)) { _, new in new }
        } else if wan {
            results["wan"] = try WANBench(quick: quick).run()
        } else if failover {
            results["failover"] = try FailoverBench(quick: quick).run()
        } else if outputCommit, let flag = arguments.firstIndex(of: "--gate-rules") {
            guard flag + 1 < arguments.count, let rules = Int(arguments[flag + 1]), rules >= 0 else { throw BenchError("--gate-rules needs a number of rules") }
            results["gatePolicy"] = try OutputCommitBench(quick: quick).runGatePolicy(rules: rules, logger: logger)
        } else if outputCommit {
            results["outputCommit"] = try OutputCommitBench(quick: quick).run(logger: logger)
        } else if vm, let flag = arguments.firstIndex(of: "--memory-sizes") {
            guard flag + 1 < arguments.count else { throw BenchError("--memory-sizes needs sizes, e.g. 512M,2G,4G,8G") }
            if !arguments.contains("--output") { output = "bench-results/vm-sizes.json" }
            results["vmSizes"] = try VMSizeBench(sizes: arguments[flag + 1], quick: quick).run()
        } else if vm {
            results["vm"] = try VMBench(quick: quick, deviceStateOnly: arguments.contains("--device-state")).run(logger: logger)
        } else if pauses {
            results["pauses"] = try PauseBench(quick: quick).run(logger: logger)
        } else {
            if cases == nil { results["codec"] = CodecBench(pagesPerRun: quick ? 4096 : 16384).run() }
            let tls = try TLSStreamBench(seconds: quick ? 1 : 3).run()
            results["tlsStream"] = tls
            let endToEnd = try EndToEndBench(seconds: quick ? 2 : 5, only: cases).run(logger: logger)
            let rows = endToEnd.map { run -> [String: Any] in
                var row = run
                if let raw = run["rawMegabytesPerSecond"] as? Double, let tlsRate = tls["megabytesPerSecond"] as? Double {
                    row["ratioToRawTLSStream"] = raw / tlsRate
                }
                // The same ratio from CPU time per byte: what wall time would show if nothing else
                // ran on the cores (both sides of both runs share this process's cores).
                if let cpu = run["cpuSeconds"] as? Double, let bytes = run["rawBytes"] as? Int, bytes > 0,
                   let tlsCPU = tls["cpuNanosecondsPerByte"] as? Double {
                    let perByte = cpu * 1e9 / Double(bytes)
                    row["cpuNanosecondsPerRawByte"] = perByte
                    row["cpuRatioToRawTLSStream"] = tlsCPU / perByte
                }
                // Where the CPU went, in cores (the busiest thread bounds the rate on a host with
                // cores to spare; here both sides share two).
                if let byThread = run["cpuSecondsByThread"] as? [String: Double], let seconds = run["seconds"] as? Double {
                    row["cpuCoresByThread"] = Bench.cores(byThread, seconds: seconds)
                }
                if let memory = run["memoryBytes"] as? Int, let sync = run["syncSeconds"] as? Double, sync > 0 {
                    row["syncMegabytesPerSecond"] = Double(memory) / 1e6 / sync
                }
                return row
            }
            results["endToEnd"] = rows
            // The headline figures of issue 16: end to end ÷ raw TLS stream, per content.
            var ratios: [String: Any] = [:]
            for (key, word) in [("random", "random"), ("mixed", "mixed")] {
                guard let row = rows.first(where: { ($0["case"] as? String)?.contains(word) == true }) else { continue }
                ratios[key] = ["wallClock": row["ratioToRawTLSStream"] ?? NSNull(), "cpuTime": row["cpuRatioToRawTLSStream"] ?? NSNull()]
            }
            results["endToEndToRawTLSStream"] = ratios
        }

        let data = try JSONSerialization.data(withJSONObject: results, options: [.prettyPrinted, .sortedKeys])
        let url = URL(fileURLWithPath: output)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: url)
        print(String(decoding: data, as: UTF8.self))
        print("wrote \(output)")
    }

    /// CPU seconds per thread name as cores (÷ the wall-clock `seconds`), leaving out threads
    /// that used less than 1 % of a core.
    static func cores(_ byThread: [String: Double], seconds: Double) -> [String: Double] {
        byThread.mapValues { $0 / max(seconds, 1e-9) }.filter { $0.value >= 0.01 }
    }
}

/// Encode and decode speed of the page codec, one thread, per kind of content.
struct CodecBench {
    let pagesPerRun: Int

    func run() -> [[String: Any]] {
        let pageSize = 4096
        var rows: [[String: Any]] = []
        let cases: [(String, [SyntheticContent])] = [
            ("text", [.text]), ("binary", [.binary]), ("random", [.random]), ("zero", [.zero]),
            ("sparseUpdate", [.sparseUpdate]), ("mixed", [.text, .binary, .sparseUpdate, .zero]),
        ]
        for (name, mix) in cases {
            let identity = VMIdentity(id: "bench", memorySize: UInt64(pagesPerRun * pageSize))
            // Prefill so that sparse updates have a previous copy to delta against.
            let guest = SyntheticGuest(identity: identity, pagesPerCheckpoint: pagesPerRun, mix: mix, seed: 7, prefill: .binary)
            let encoder = PageEncoder(pageSize: pageSize, capabilities: .supported)
            let decoder = PageDecoder(pageSize: pageSize)
            let lastSent = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(identity.memorySize), alignment: 4096)
            let replica = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(identity.memorySize), alignment: 4096)
            defer { lastSent.deallocate(); replica.deallocate() }
            lastSent.copyMemory(from: guest.memory)
            replica.copyMemory(from: guest.memory)
            try! guest.startTracking()
            let captured = try! guest.capture(epoch: 1, resume: true)
            var frames: [PageBatch] = []
            var wire = 0
            let encodeStart = ContinuousClock.now
            var position = 0
            while position < captured.pageIndices.count {
                var builder = PageBatchBuilder(type: .pages, epoch: 1, capacity: 256 * encoder.maxEncodedSize)
                for p in position..<min(position + 256, captured.pageIndices.count) {
                    let index = Int(captured.pageIndices[p])
                    encoder.append(page: UnsafeRawBufferPointer(captured.page(at: p)), index: UInt64(index),
                                   lastSent: UnsafeMutableRawBufferPointer(rebasing: lastSent[(index * pageSize)..<((index + 1) * pageSize)]),
                                   to: &builder)
                }
                let frame = builder.finish()
                wire += frame.bytes.count
                frames.append(try! PageBatch(frame: frame, pageSize: pageSize, pageCount: identity.pageCount))
                position += 256
            }
            let encodeSeconds = (ContinuousClock.now - encodeStart).seconds
            let decodeStart = ContinuousClock.now
            for batch in frames {
                for entry in batch.entries {
                    let page = UnsafeMutableRawBufferPointer(rebasing: replica[(Int(entry.index) * pageSize)..<((Int(entry.index) + 1) * pageSize)])
                    try! decoder.decode(entry, of: batch, base: UnsafeRawBufferPointer(page), into: page)
                }
            }
            let decodeSeconds = (ContinuousClock.now - decodeStart).seconds
            let raw = captured.pageIndices.count * pageSize
            rows.append([
                "content": name, "pages": captured.pageIndices.count,
                "encodeMegabytesPerSecond": Double(raw) / 1e6 / encodeSeconds,
                "decodeMegabytesPerSecond": Double(raw) / 1e6 / decodeSeconds,
                "compressionRatio": Double(raw) / Double(wire),
            ])
            FileHandle.standardError.write(Data(String(format: "codec %-12@ encode %7.0f MB/s  decode %7.0f MB/s  ratio %5.2f\n",
                                                       name, Double(raw) / 1e6 / encodeSeconds, Double(raw) / 1e6 / decodeSeconds,
                                                       Double(raw) / Double(wire)).utf8))
        }
        return rows
    }
}

/// Raw TLS 1.3 stream throughput over loopback: the ceiling for the replication stream.
struct TLSStreamBench {
    let seconds: Double

    func run() throws -> [String: Any] {
        let temporary = try TemporaryDirectory("bench")
        defer { temporary.remove() }
        let workspace = temporary.path
        try CertificateAuthority.initialize(directory: workspace, nodes: ["a", "b"])
        let listener = try TCPListener(endpoint: Endpoint(host: "127.0.0.1", port: 0))
        let serverContext = try TLSContext(role: .server, configuration: TLSConfiguration(directory: workspace, node: "b", peer: "a"))
        let clientContext = try TLSContext(role: .client, configuration: TLSConfiguration(directory: workspace, node: "a", peer: "b"))
        let received = ReceivedCounter()
        let server = JoinableThread(name: "bench-tls-srv") {
            guard let accepted = try? listener.accept(),
                  let stream = try? TLSStream.accept(fd: accepted.fd, peer: accepted.peer, context: serverContext) else { return }
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
            defer { buffer.deallocate() }
            while (try? stream.read(into: buffer)) != nil { received.add(buffer.count) }
        }
        let client = try TLSStream.connect(to: listener.endpoint, context: clientContext)
        let chunk = [UInt8](repeating: 0x5A, count: 1 << 20)
        let cpu = ProcessCPU()
        let threads = ProcessCPU.ByThread()
        let start = ContinuousClock.now
        var sent = 0
        while (ContinuousClock.now - start).seconds < seconds {
            try client.write(chunk)
            sent += chunk.count
        }
        while received.value < sent { Thread.sleep(forTimeInterval: 0.001) }
        let elapsed = (ContinuousClock.now - start).seconds
        let cpuSeconds = cpu.elapsed
        let byThread = threads.elapsed
        client.shutdown()
        server.join()
        let rate = Double(sent) / 1e6 / elapsed
        let perByte = cpuSeconds * 1e9 / Double(sent)
        FileHandle.standardError.write(Data(String(format: "tls stream %7.0f MB/s, %.2f ns of CPU per byte\n", rate, perByte).utf8))
        return ["bytes": sent, "seconds": elapsed, "megabytesPerSecond": rate, "cpuSeconds": cpuSeconds, "cpuNanosecondsPerByte": perByte,
                "cpuCoresByThread": Bench.cores(byThread, seconds: elapsed)]
    }
}

final class ReceivedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var total = 0
    func add(_ count: Int) { lock.lock(); total += count; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return total }
}

/// Primary and backup on loopback over TLS with a synthetic guest, back-to-back checkpoints.
struct EndToEndBench {
    let seconds: Double
    /// Runs only the cases whose names contain one of these words; nil: all.
    var only: [String]? = nil

    func run(logger: Logger) throws -> [[String: Any]] {
        let cases: [(String, [SyntheticContent], Int)] = [
            // Typical checkpoint dirty sets: pages zeroed, and pages with a few words changed.
            ("compressible (zero pages, sparse updates)", [.zero, .sparseUpdate], 8000),
            ("sparse updates only", [.sparseUpdate], 8000),
            ("mixed (text, binary, sparse updates, zero)", [.text, .binary, .sparseUpdate, .zero], 4000),
            ("incompressible (random)", [.random], 2000),
        ]
        var rows: [[String: Any]] = []
        for (name, mix, pages) in cases where only.map({ $0.contains { name.contains($0) } }) ?? true {
            var options = SyntheticRun.Options()
            options.mix = mix
            options.pagesPerCheckpoint = pages
            options.duration = .milliseconds(Int(seconds * 1000))
            let report = try SyntheticRun(options: options).run(logger: logger)
            let data = try JSONEncoder().encode(report)
            var row = try JSONSerialization.jsonObject(with: data) as! [String: Any]
            row["case"] = name
            rows.append(row)
            FileHandle.standardError.write(Data(String(format: "end to end %@: %7.0f MB/s raw, %6.0f MB/s wire, %4.0f checkpoints/s, %.2f ns of CPU per raw byte, sync %.0f MB/s, replica equal: %@\n",
                                                       name, report.rawMegabytesPerSecond, report.wireMegabytesPerSecond,
                                                       report.checkpointsPerSecond, report.cpuSeconds * 1e9 / Double(max(report.rawBytes, 1)),
                                                       Double(report.memoryBytes) / 1e6 / report.syncSeconds,
                                                       report.replicaMatchesPrimary ? "yes" : "NO").utf8))
        }
        return rows
    }
}
