"""Pure CRDT logic: the room schema, the wire codec, position maps. No I/O."""
