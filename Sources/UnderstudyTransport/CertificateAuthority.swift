import CUnderstudyShims
import Foundation
import UnderstudySystem

/// Creates the private CA and per-node credentials that a replication pair authenticates with.
///
/// Layout in the directory: `ca.pem`, `ca.key`, and for each node `NODE.pem`, `NODE.key`.
/// Each node certificate names the node (CN and subjectAltName DNS) and is valid for TLS client
/// and server use. Keys are EC P-256, written with mode 0600.
public enum CertificateAuthority {
    public static let defaultValidDays = 825

    /// Writes a new CA and one key and certificate per node. Refuses to overwrite existing files.
    /// - Returns: the paths written.
    @discardableResult
    public static func initialize(directory: String, nodes: [String], validDays: Int = defaultValidDays) throws(TransportError) -> [String] {
        guard !nodes.isEmpty else { throw .credentials("name at least one node") }
        for node in nodes {
            guard !node.isEmpty, node.utf8.count <= 63, node.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }),
                  node != "ca" else {
                throw .credentials("node name \"\(node)\" must be 1-63 letters, digits, '-' or '.', and not \"ca\"")
            }
        }
        // Certificate names match case-insensitively (DNS): "a" and "A" would be one name.
        guard Set(nodes.map { $0.lowercased() }).count == nodes.count else {
            throw .credentials("node names must be distinct (ignoring case)")
        }
        let files = ["ca.pem", "ca.key"] + nodes.flatMap { ["\($0).pem", "\($0).key"] }
        let paths = files.map { "\(directory)/\($0)" }
        if let existing = paths.first(where: { FileManager.default.fileExists(atPath: $0) }) {
            throw .credentials("\(existing) already exists; remove it or choose another directory")
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw .credentials("cannot create \(directory): \(error.localizedDescription)")
        }

        let caKey = try generateKey()
        defer { EVP_PKEY_free(caKey) }
        guard let caCert = us_make_certificate(caKey, "Understudy CA", nil, 1, nil, caKey, Int32(validDays) + 365, randomSerial()) else {
            throw .credentials("cannot create the CA certificate: \(openSSLErrors())")
        }
        defer { X509_free(caCert) }
        try write(pem: { us_pem_private_key(caKey, $0, $1) }, to: "\(directory)/ca.key", mode: 0o600)
        try write(pem: { us_pem_certificate(caCert, $0, $1) }, to: "\(directory)/ca.pem", mode: 0o644)

        for node in nodes {
            let key = try generateKey()
            defer { EVP_PKEY_free(key) }
            guard let cert = us_make_certificate(key, node, node, 0, caCert, caKey, Int32(validDays), randomSerial()) else {
                throw .credentials("cannot create the certificate of \(node): \(openSSLErrors())")
            }
            defer { X509_free(cert) }
            try write(pem: { us_pem_private_key(key, $0, $1) }, to: "\(directory)/\(node).key", mode: 0o600)
            try write(pem: { us_pem_certificate(cert, $0, $1) }, to: "\(directory)/\(node).pem", mode: 0o644)
        }
        return paths
    }

    private static func generateKey() throws(TransportError) -> OpaquePointer {
        guard let key = us_generate_ec_key() else { throw .credentials("cannot generate a key: \(openSSLErrors())") }
        return key
    }

    private static func randomSerial() -> UInt64 { UInt64.random(in: 1...UInt64(Int64.max)) }

    /// Creates `path` with `mode` from the start (never briefly world-readable) and writes the PEM.
    private static func write(pem produce: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>, UnsafeMutablePointer<Int>) -> Int32,
                              to path: String, mode: mode_t) throws(TransportError) {
        var buffer: UnsafeMutablePointer<CChar>?
        var length = 0
        guard produce(&buffer, &length) == 1, let buffer else {
            throw .credentials("cannot encode \(path): \(openSSLErrors())")
        }
        defer { free(buffer) }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .credentials("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var written = 0
        while written < length {
            let n = Foundation.write(fd, buffer + written, length - written)
            guard n > 0 else { throw .credentials("cannot write \(path): \(String(cString: strerror(errno)))") }
            written += n
        }
    }
}
