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
        for node in nodes { try checkName(node) }
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

        for node in nodes { try issue(node, caCert: caCert, caKey: caKey, directory: directory, validDays: validDays) }
        return paths
    }

    /// Issues one more node's key and certificate from the CA already in `directory` (`ca.pem`,
    /// `ca.key`): a host joining a fleet (a spare) gets a name its peers trust without a new CA.
    /// Refuses to overwrite the node's files, or a name that differs only in case from another
    /// certificate there.
    /// - Returns: the paths written.
    @discardableResult
    public static func add(directory: String, node: String, validDays: Int = defaultValidDays) throws(TransportError) -> [String] {
        try checkName(node)
        let existing = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        if let clash = existing.first(where: { $0.hasSuffix(".pem") && $0 != "ca.pem" && $0.dropLast(4).lowercased() == node.lowercased() }) {
            throw .credentials("\(directory)/\(clash) already exists: node names must be distinct (ignoring case)")
        }
        let caCert = try read("\(directory)/ca.pem", what: "the CA certificate") { PEM_read_bio_X509($0, nil, nil, nil) }
        defer { X509_free(caCert) }
        let caKey = try read("\(directory)/ca.key", what: "the CA key") { PEM_read_bio_PrivateKey($0, nil, nil, nil) }
        defer { EVP_PKEY_free(caKey) }
        guard X509_check_private_key(caCert, caKey) == 1 else {
            throw .credentials("\(directory)/ca.key is not the key of \(directory)/ca.pem")
        }
        try issue(node, caCert: caCert, caKey: caKey, directory: directory, validDays: validDays)
        return ["\(directory)/\(node).pem", "\(directory)/\(node).key"]
    }

    private static func checkName(_ node: String) throws(TransportError) {
        guard !node.isEmpty, node.utf8.count <= 63, node.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }),
              node != "ca" else {
            throw .credentials("node name \"\(node)\" must be 1-63 letters, digits, '-' or '.', and not \"ca\"")
        }
    }

    /// Writes `node`'s new key and its certificate signed by the CA.
    private static func issue(_ node: String, caCert: OpaquePointer, caKey: OpaquePointer, directory: String, validDays: Int) throws(TransportError) {
        let key = try generateKey()
        defer { EVP_PKEY_free(key) }
        guard let cert = us_make_certificate(key, node, node, 0, caCert, caKey, Int32(validDays), randomSerial()) else {
            throw .credentials("cannot create the certificate of \(node): \(openSSLErrors())")
        }
        defer { X509_free(cert) }
        for path in ["\(directory)/\(node).key", "\(directory)/\(node).pem"] where FileManager.default.fileExists(atPath: path) {
            throw .credentials("\(path) already exists; remove it or choose another name")
        }
        try write(pem: { us_pem_private_key(key, $0, $1) }, to: "\(directory)/\(node).key", mode: 0o600)
        try write(pem: { us_pem_certificate(cert, $0, $1) }, to: "\(directory)/\(node).pem", mode: 0o644)
    }

    /// One PEM object of the file at `path`, parsed by `parse`.
    private static func read(_ path: String, what: String, _ parse: (OpaquePointer) -> OpaquePointer?) throws(TransportError) -> OpaquePointer {
        guard let data = FileManager.default.contents(atPath: path) else { throw .credentials("cannot read \(what) \(path)") }
        let parsed: OpaquePointer? = data.withUnsafeBytes { bytes in
            guard let bio = BIO_new_mem_buf(bytes.baseAddress, Int32(bytes.count)) else { return nil }
            defer { BIO_free(bio) }
            return parse(bio)
        }
        guard let parsed else { throw .credentials("\(path) does not hold \(what) in PEM: \(openSSLErrors())") }
        return parsed
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
