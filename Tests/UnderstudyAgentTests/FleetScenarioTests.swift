import Foundation
import Testing
import UnderstudyAgent
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTestTags

/// `understudy demo --fleet --json`, as a user runs it: two counter guests on four hosts (network
/// namespaces on a management LAN) with a spare and a three-member etcd cluster; an etcd member killed, a backup host and a primary host
/// killed and restarted. The report must show the spare re-protecting after each host, never two primaries, nothing lost,
/// a drill passed per VM; and nothing of it may be left behind.
@Suite("understudy demo --fleet", .tags(.vm), .skippedInQuickLoop,
       .enabled(if: EtcdProcess.isInstalled, "needs /usr/bin/etcd (Debian's etcd-server)"))
struct FleetScenarioTests {
    @Test func aFleetSurvivesAnEtcdMemberABackupHostAndAPrimaryHostWithNothingDoubledOrLost() throws {
        let started = ContinuousClock.now
        let result = try runCLI(["demo", "--fleet", "--json"])
        print("demo --fleet --json: exit \(result.status) after \(Int((ContinuousClock.now - started).seconds)) s\n\(result.stdout)")
        #expect(result.status == 0, "\(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any],
                                  "no JSON report: \(result.stdout) \(result.stderr)")
        #expect((report["vms"] as? [String])?.count == 2, "\(report)")
        // Four hosts, each a namespace with an address of its own on the management LAN.
        let hosts = try #require(report["hosts"] as? [String: String], "\(report)")
        #expect(Set(hosts.keys) == ["h1", "h2", "h3", "h4"] && Set(hosts.values).count == 4, "\(report)")
        #expect(hosts.values.allSatisfy { $0.hasPrefix("10.78.") }, "\(report)")
        let reprotected = try #require(report["reprotected_ms"] as? [String: Int], "\(report)")
        #expect(Set(reprotected.keys) == ["backup_host_h3_killed", "primary_host_h1_killed"], "\(report)")
        #expect(reprotected.values.allSatisfy { $0 > 0 }, "\(report)")
        #expect(report["lost_acknowledged_output"] as? Int == 0, "\(report)")
        #expect(report["two_active_copies"] as? Int == 0, "\(report)")
        #expect((report["registry_samples"] as? Int ?? 0) > 10, "\(report)")
        #expect(report["drills_passed"] as? Int == 2, "\(report)")
        #expect((report["events"] as? [String])?.count == 4, "\(report)")
        #expect(report["ok"] as? Bool == true, "\(report)")

        // Everything it made carries the tag of its working directory, which its progress names.
        let tag = try #require(result.stderr.firstMatch(of: /understudy-fleet-(f\d+)/).map { String($0.1) },
                               "the progress names no working directory: \(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: NSTemporaryDirectory() + "understudy-fleet-\(tag)"))
        let shm = ((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []).filter { $0.contains(tag) }
        #expect(shm.isEmpty, "left in /dev/shm: \(shm)")
        let interfaces = (try? String(contentsOfFile: "/proc/net/dev", encoding: .utf8)) ?? ""
        #expect(!interfaces.contains(tag), "network interfaces left: \(interfaces)")
        let namespaces = try HostCommand.run(["ip", "netns", "list"])
        #expect(!namespaces.contains(tag), "network namespaces left: \(namespaces)")
        let processes = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap(Int32.init).filter { pid in
            let arguments = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))).map { String(decoding: $0, as: UTF8.self) }
            return arguments?.contains("understudy-fleet-\(tag)") ?? false
        }
        #expect(processes.isEmpty, "processes left running: \(processes)")
    }
}
