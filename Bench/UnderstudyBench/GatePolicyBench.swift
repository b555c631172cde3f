import Foundation
import Synchronization
import UnderstudyNetwork
import UnderstudySystem

/// What the gate policy costs per frame, on the gate's own path: classify the frame's headers
/// (`FrameSummary`), then, under the policy's lock and with the clock read, try the rules in
/// order (`GatePolicyStateMachine.filter`). Frames like the counter guest's (TCP to and from its
/// service port, ARP, a UDP datagram), against no rules and against `rules` rules that match
/// none of them, so every frame is tried against every rule: the worst case of that many rules.
struct GatePolicyBench {
    let rules: Int
    let framesPerRun: Int

    /// `count` deny rules for TCP to 192.0.2.x (TEST-NET-1, never the guest's peers), ports 1-65535:
    /// the direction and protocol match a TCP frame, the destination never does.
    static func nonMatchingRules(_ count: Int) -> GatePolicy {
        GatePolicy(rules: (0..<count).map { index in
            GateRule(action: .deny, traffic: .tcp, destination: IPv4Network(address: 0xC000_0200 | UInt32(index % 256), prefixLength: 32),
                     destinationPorts: PortRange(1, 65535))
        })
    }

    /// Ethernet frames as the counter guest exchanges them (10.x addresses, service port 7000).
    static func sampleFrames() -> [(frame: [UInt8], direction: FrameDirection)] {
        func frame(etherType: [UInt8], _ payload: [UInt8]) -> [UInt8] {
            [0x52, 0x54, 0, 0x77, 0, 2, 0x02, 0, 0, 0, 0, 1] + etherType + payload
        }
        func ipv4(protocol number: UInt8, from source: [UInt8], to destination: [UInt8], ports: (UInt16, UInt16), length: Int) -> [UInt8] {
            var header: [UInt8] = [0x45, 0, UInt8(length >> 8), UInt8(length & 0xFF), 0, 0, 0x40, 0, 64, number, 0, 0] + source + destination
            header += [UInt8(ports.0 >> 8), UInt8(ports.0 & 0xFF), UInt8(ports.1 >> 8), UInt8(ports.1 & 0xFF)]
            return header + [UInt8](repeating: 0, count: max(0, length - header.count))
        }
        let guest: [UInt8] = [10, 77, 0, 2], client: [UInt8] = [10, 77, 0, 1]
        let arp: [UInt8] = [0, 1, 0x08, 0x00, 6, 4, 0, 1, 0x52, 0x54, 0, 0x77, 0, 2] + guest + [0, 0, 0, 0, 0, 0] + client
        return [
            (frame(etherType: [0x08, 0x00], ipv4(protocol: 6, from: client, to: guest, ports: (40000, 7000), length: 54)), .toGuest),
            (frame(etherType: [0x08, 0x00], ipv4(protocol: 6, from: guest, to: client, ports: (7000, 40000), length: 60)), .fromGuest),
            (frame(etherType: [0x08, 0x00], ipv4(protocol: 6, from: guest, to: client, ports: (7000, 40000), length: 1500)), .fromGuest),
            (frame(etherType: [0x08, 0x06], arp), .fromGuest),
            (frame(etherType: [0x08, 0x00], ipv4(protocol: 17, from: guest, to: client, ports: (5353, 5353), length: 120)), .fromGuest),
        ]
    }

    /// Nanoseconds per frame, the best of `repeats` runs (the machine is shared: the least disturbed run).
    func nanosecondsPerFrame(_ policy: GatePolicy, repeats: Int = 5) -> Double {
        let frames = Self.sampleFrames()
        let machine = Mutex(GatePolicyStateMachine(policy: policy, now: .now))
        var best = Double.infinity
        var allowed = 0
        for _ in 0..<repeats {
            let start = ContinuousClock.now
            for index in 0..<framesPerRun {
                let (frame, direction) = frames[index % frames.count]
                // The gate's own steps: classify outside the lock, decide inside it with the clock.
                let summary = frame.withUnsafeBytes { FrameSummary(parsing: $0) }
                if machine.withLock({ $0.filter(summary, length: frame.count, direction, now: .now) }).allowed { allowed += 1 }
            }
            best = min(best, (ContinuousClock.now - start).seconds * 1e9 / Double(framesPerRun))
        }
        precondition(allowed == repeats * framesPerRun, "the bench's rules must match none of its frames")
        return best
    }

    func run() -> [String: Any] {
        let none = nanosecondsPerFrame(.allowAll)
        let many = nanosecondsPerFrame(Self.nonMatchingRules(rules))
        FileHandle.standardError.write(Data(String(format: "gate policy: %.0f ns/frame with no rules, %.0f ns/frame with %ld non-matching rules (%.1f M frames/s on one core)\n",
                                                   none, many, rules, 1e3 / many).utf8))
        return [
            "rules": rules,
            "frames_per_run": framesPerRun,
            "ns_per_frame_no_rules": none,
            "ns_per_frame": many,
            "added_ns_per_frame": many - none,
            "frames_per_second_one_core": 1e9 / many,
        ]
    }
}
