extension String {
    /// Nil for an empty string: an element or attribute that is there but says nothing.
    var nonEmpty: String? { isEmpty ? nil : self }
}
