extension ImportPlan {
    /// The plan with its files checked against `facts`: each disk's raw image (the source in
    /// place, or the conversion's output in the output directory), the UEFI store to copy, and a
    /// blocker for whatever is missing, would need converting without `--convert-disks`, or
    /// would overwrite a file.
    public func resolved(facts: ImportFacts, options: ImportOptions) -> ImportPlan {
        var plan = self
        for index in plan.disks.indices {
            let disk = plan.disks[index]
            let subject = "disk \(disk.target) (\(disk.sourceName): \(disk.source))"
            guard let image = facts.images[disk.source] else {
                plan.block(subject, "not found: run the import on the host that holds the VM's images")
                continue
            }
            let size = disk.capacity ?? image.virtualSize
            plan.disks[index].size = size
            guard disk.format == "raw", !image.isBlockDevice, !image.inArchive else {
                let output = "\(options.outDirectory)/\(disk.target).raw"
                plan.disks[index].output = output
                plan.disks[index].converted = true
                if !options.convertDisks {
                    plan.block(subject, "\(image.isBlockDevice ? "a block device" : image.inArchive && disk.format == "raw" ? "raw inside the archive" : disk.format): the VM model's disks are raw files. Run again with --convert-disks to write \(output)"
                               + (size.map { " (\($0) bytes)" } ?? "") + " with qemu-img convert; the source stays as it is")
                } else if facts.existingPaths.contains(output) {
                    plan.block(subject, "\(output) exists already: remove it or choose another --out")
                }
                continue
            }
            plan.disks[index].output = disk.source
            if let size, size == 0 || size % 512 != 0 {
                plan.block(subject, "\(size) bytes: a disk must be a positive multiple of 512 bytes")
            }
        }
        let images = plan.disks.compactMap(\.output)
        if Set(images).count != images.count {
            plan.block("disks", "one image is used by two disks: each disk must be a file of its own")
        }
        if plan.firmware == .uefi, plan.disks.count >= Self.maximumDisks {
            // The variable store is replicated as one more image of the disk set.
            plan.block("disks", "\(plan.disks.count) disks and the UEFI variable store: at most \(Self.maximumDisks - 1) disks with UEFI")
        }
        if plan.firmware == .uefi {
            if let own = plan.uefiVarsSource, facts.existingPaths.contains(own) {
                plan.uefiVarsCopiedFrom = own
            } else if facts.existingPaths.contains(options.uefiVarsTemplate) {
                plan.uefiVarsCopiedFrom = options.uefiVarsTemplate
                plan.change("UEFI variable store", "a copy of \(options.uefiVarsTemplate)",
                            because: plan.uefiVarsSource.map { "\($0) does not exist (the domain never booted here)" } ?? "the source has none: boot entries start empty, and OVMF boots the disk's default loader")
            } else {
                plan.block("UEFI variable store", "\(plan.uefiVarsSource ?? "none in the source"), and no template at \(options.uefiVarsTemplate): install Debian's ovmf")
            }
        }
        for (what, path) in [("kernel", plan.kernel), ("initrd", plan.initrd)] {
            if let path, !facts.existingPaths.contains(path) { plan.block("\(what) \(path)", "not found on this host") }
        }
        var outputs = [options.primaryConfigurationPath, options.backupConfigurationPath]
        if plan.firmware == .uefi { outputs.append(options.uefiVarsPath) }
        for path in outputs where facts.existingPaths.contains(path) {
            plan.block(path, "exists already: remove it or choose another --out")
        }
        return plan
    }

    /// Paths whose existence `resolved` asks about.
    public func pathsToCheck(options: ImportOptions) -> [String] {
        var paths = [options.primaryConfigurationPath, options.backupConfigurationPath, options.uefiVarsPath, options.uefiVarsTemplate]
        paths += disks.map { "\(options.outDirectory)/\($0.target).raw" }
        paths += [uefiVarsSource, kernel, initrd].compactMap { $0 }
        return paths
    }
}
