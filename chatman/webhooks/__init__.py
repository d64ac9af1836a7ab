"""Provider endpoints: verify the signature, parse, hand a normalised event to the domain."""
