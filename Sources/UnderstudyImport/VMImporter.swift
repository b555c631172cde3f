import Foundation
import UnderstudyAgent
import UnderstudySystem

/// Carries out an import: reads the source, asks the host about its images, and, when nothing
/// blocks, converts what needs converting (`qemu-img convert`, progress on standard error),
/// copies the UEFI variable store and writes the pair's configuration; the report is written
/// either way. Nothing outside the output directory is ever written, and nothing is converted
/// without `--convert-disks`.
public enum VMImporter {
    /// Imports the libvirt domain in `file` (the output of `virsh dumpxml`).
    public static func importLibvirt(file: String, options: ImportOptions) throws(ImportError) -> ImportReport {
        let xml = try read(file)
        let plan: ImportPlan
        do {
            plan = try LibvirtDomainImport.plan(xml: xml, id: options.id)
        } catch {
            throw ImportError("\(file): \(error)")
        }
        let images = Dictionary(plan.disks.map { ($0.source, imageFacts($0)) }, uniquingKeysWith: { first, _ in first }).compactMapValues { $0 }
        return try carryOut(plan, source: file, images: images, options: options) { disk in disk.source }
    }

    /// Reads the plan's facts from the host, resolves it and, when nothing blocks, writes
    /// everything; `extract` gives the file to convert a disk from (an OVA member is unpacked first).
    static func carryOut(_ plan: ImportPlan, source: String, images: [String: ImportFacts.Image], options: ImportOptions,
                         extract: (ImportedDisk) throws(ImportError) -> String) throws(ImportError) -> ImportReport {
        let existing = Set(plan.pathsToCheck(options: options).filter { FileManager.default.fileExists(atPath: $0) })
        var resolved = plan.resolved(facts: ImportFacts(images: images, existingPaths: existing), options: options)
        do {
            try FileManager.default.createDirectory(atPath: options.outDirectory, withIntermediateDirectories: true)
        } catch {
            throw ImportError("cannot create \(options.outDirectory): \(error.localizedDescription)")
        }
        guard resolved.isProtectable else {
            let report = ImportReport(source: source, plan: resolved, written: [], options: options)
            try write(report.text, to: options.reportPath)
            return report
        }
        var written: [String] = []
        do throws(ImportError) {
            let configuration = PairConfiguration(plan: resolved, options: options)
            let files = [(options.primaryConfigurationPath, configuration.text(for: .primary)), (options.backupConfigurationPath, configuration.text(for: .backup))]
            for (path, text) in files {
                // What is written must read back: a bug here must not leave the operator a broken file.
                do { _ = try TOMLDocument(parsing: text, source: path) } catch { throw ImportError("the generated \(path) does not parse: \(error)") }
            }
            for (index, disk) in resolved.disks.enumerated() where disk.converted {
                let input = try extract(disk)
                written.append(disk.output!)
                try convert(input, format: disk.format, to: disk.output!)
                if input != disk.source { try? FileManager.default.removeItem(atPath: input) }
                // The raw image's size is what the backup's replica disk must have.
                resolved.disks[index].size = (try? FileManager.default.attributesOfItem(atPath: disk.output!))?[.size] as? UInt64
            }
            if let vars = resolved.uefiVarsCopiedFrom {
                do { try FileManager.default.copyItem(atPath: vars, toPath: options.uefiVarsPath) } catch {
                    throw ImportError("cannot copy \(vars) to \(options.uefiVarsPath): \(error.localizedDescription)")
                }
                written.append(options.uefiVarsPath)
            }
            for (path, text) in files {
                try write(text, to: path)
                written.append(path)
            }
        } catch {
            // All or nothing: a half-done import leaves no file a later run would refuse to overwrite.
            for path in written { try? FileManager.default.removeItem(atPath: path) }
            throw error
        }
        let report = ImportReport(source: source, plan: resolved, written: written + [options.reportPath], options: options)
        try write(report.text, to: options.reportPath)
        return report
    }

    /// What the host says about a disk's source file: nil when it is not there.
    static func imageFacts(_ disk: ImportedDisk) -> ImportFacts.Image? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: disk.source), let type = attributes[.type] as? FileAttributeType,
              type == .typeRegular || type == .typeBlockSpecial else { return nil }
        if type == .typeRegular, disk.format == "raw" { return ImportFacts.Image(virtualSize: attributes[.size] as? UInt64) }
        return ImportFacts.Image(isBlockDevice: type == .typeBlockSpecial, virtualSize: virtualSize(disk.source, format: disk.format))
    }

    /// `qemu-img info`'s virtual size; shared locking off, so an image a VM still holds can be asked.
    static func virtualSize(_ path: String, format: String) -> UInt64? {
        guard let output = try? HostCommand.execute("/usr/bin/env", ["qemu-img", "info", "-U", "--output=json", "-f", format, path]), output.status == 0,
              let object = try? JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any] else { return nil }
        return (object["virtual-size"] as? NSNumber)?.uint64Value
    }

    /// `qemu-img convert` to a raw file, its progress on this process's standard error.
    static func convert(_ input: String, format: String, to output: String) throws(ImportError) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["qemu-img", "convert", "-p", "-f", format, "-O", "raw", input, output]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.standardError
        process.standardError = FileHandle.standardError
        FileHandle.standardError.write(Data("converting \(input) (\(format)) to \(output)\n".utf8))
        do { try process.run() } catch { throw ImportError("cannot run qemu-img: \(error.localizedDescription)") }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw ImportError("qemu-img convert \(input) failed (exit \(process.terminationStatus)): see its message above") }
    }

    static func read(_ file: String) throws(ImportError) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: file) else { throw ImportError("cannot read \(file)") }
        return Array(data)
    }

    static func write(_ text: String, to path: String) throws(ImportError) {
        do { try Data(text.utf8).write(to: URL(fileURLWithPath: path)) } catch { throw ImportError("cannot write \(path): \(error.localizedDescription)") }
    }
}
