/**
 * Errors a reader raises for bad input, with one-line messages that name the
 * file and, for `.cgs`, the section (the same wording as compgs.errors in Python).
 */

/** The bytes are not a valid file of the format they claim to be. */
export class CorruptFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CorruptFileError";
  }
}

/** A real file of a kind (or version) this viewer does not read. */
export class UnsupportedFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnsupportedFormatError";
  }
}
