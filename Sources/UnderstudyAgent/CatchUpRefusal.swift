/// Why a primary resynchronises in full instead of catching up.
struct CatchUpRefusal: Error, CustomStringConvertible {
    let reason: String
    var description: String { reason }
}
