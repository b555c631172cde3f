// Stands in for QEMU in the dirty-tracking tests: maps a file shared (as guest RAM), and on
// each stdin line of page numbers writes 8 random bytes into each of those pages, then prints
// "done". Prints "ready" once the mapping exists. Run with LD_PRELOAD of the preload library.
import Foundation

let arguments = CommandLine.arguments
guard arguments.count == 3, let size = Int(arguments[2]) else {
    FileHandle.standardError.write(Data("usage: DirtyTrackingHelper FILE SIZE\n".utf8))
    exit(64)
}
let fd = open(arguments[1], O_RDWR | O_CREAT, 0o600)
guard fd >= 0, ftruncate(fd, off_t(size)) == 0, let memory = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0),
      memory != MAP_FAILED else {
    FileHandle.standardError.write(Data("DirtyTrackingHelper: cannot map \(arguments[1])\n".utf8))
    exit(1)
}
var rng = SystemRandomNumberGenerator()
print("ready")
fflush(nil)
while let line = readLine() {
    for page in line.split(separator: " ").compactMap({ Int($0) }) {
        memory.storeBytes(of: rng.next() as UInt64, toByteOffset: page * 4096 + 64, as: UInt64.self)
    }
    print("done")
    fflush(nil)
}
