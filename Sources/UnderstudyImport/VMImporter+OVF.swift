import Foundation
import UnderstudySystem

extension VMImporter {
    /// Imports an OVF appliance: an OVA (a tar archive whose first .ovf member is the envelope;
    /// its disks are unpacked into the output directory only to be converted) or a loose .ovf
    /// whose files sit beside it.
    public static func importOVF(file: String, options: ImportOptions) throws(ImportError) -> ImportReport {
        guard isTar(file) else {
            let directory = URL(fileURLWithPath: file).deletingLastPathComponent().path
            var plan = try ovfPlan(read(file), file: file, options: options)
            for index in plan.disks.indices { plan.disks[index].source = "\(directory)/\(plan.disks[index].source)" }
            let images = Dictionary(plan.disks.map { disk in
                (disk.source, imageFacts(disk).map { ImportFacts.Image(isBlockDevice: $0.isBlockDevice, virtualSize: disk.capacity ?? $0.virtualSize) })
            }, uniquingKeysWith: { first, _ in first }).compactMapValues { $0 }
            return try carryOut(plan, source: file, images: images, options: options) { disk in disk.source }
        }
        let members = try tar(["-tf", file]).split(separator: "\n").map(String.init)
        guard let envelope = members.first(where: { $0.lowercased().hasSuffix(".ovf") }) else { throw ImportError("\(file): an archive with no .ovf envelope") }
        // "--": a member name is never taken for an option (GNU tar reads options anywhere).
        let plan = try ovfPlan(Array(try tar(["-xOf", file, "--", envelope]).utf8), file: "\(file):\(envelope)", options: options)
        let present = Set(members)
        let images = Dictionary(plan.disks.filter { present.contains($0.source) }.map { ($0.source, ImportFacts.Image(virtualSize: $0.capacity, inArchive: true)) },
                                uniquingKeysWith: { first, _ in first })
        let unpacked = "\(options.outDirectory)/.ova-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: unpacked) }
        return try carryOut(plan, source: file, images: images, options: options) { disk throws(ImportError) in
            do { try FileManager.default.createDirectory(atPath: unpacked, withIntermediateDirectories: true) } catch {
                throw ImportError("cannot create \(unpacked): \(error.localizedDescription)")
            }
            _ = try tar(["-xf", file, "-C", unpacked, "--no-same-owner", "--", disk.source])
            return "\(unpacked)/\(disk.source)"
        }
    }

    private static func ovfPlan(_ xml: [UInt8], file: String, options: ImportOptions) throws(ImportError) -> ImportPlan {
        do { return try OVFEnvelopeImport.plan(xml: xml, id: options.id) } catch { throw ImportError("\(file): \(error)") }
    }

    /// A POSIX tar archive carries "ustar" at offset 257 of its first header.
    private static func isTar(_ file: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: file) else { return false }
        defer { try? handle.close() }
        let header = (try? handle.read(upToCount: 262)) ?? Data()
        return header.count == 262 && header.suffix(5).elementsEqual("ustar".utf8)
    }

    private static func tar(_ arguments: [String]) throws(ImportError) -> String {
        let output: HostCommand.Output
        do { output = try HostCommand.execute("/usr/bin/env", ["tar"] + arguments) } catch { throw ImportError("\(error)") }
        guard output.status == 0 else { throw ImportError("tar \(arguments.joined(separator: " ")) failed: \(output.stderr.trimmingCharacters(in: .whitespacesAndNewlines))") }
        return output.stdout
    }
}
