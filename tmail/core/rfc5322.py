"""Structured header fields parsed as the RFCs define them: address lists
(RFC 5322 s3.4, with the obsolete syntax of s4.4 that real mail still has)
and the authserv-id of Authentication-Results (RFC 8601 s2.2).

tmail decides things on these fields (DMARC on From, which
Authentication-Results fields are forgeries, which alias a bounce was for),
so a lenient parser is a risk: Python 3.11's email.utils.getaddresses
returns an empty address for some valid From fields. Here a value either
parses or raises HeaderSyntaxError, and each caller writes down what the
safe decision is when it does not.

Understood: folding, comments (nested, with quoted-pairs) wherever CFWS may
be, quoted strings, domain literals, groups, obs-route (`<@a,@b:x@y>`),
obs-local-part and obs-domain (CFWS around the dots), obs-phrase (dots in a
display name), empty list elements, UTF-8 (RFC 6532) and RFC 2047 encoded
words in display names. Refused: NUL, a CR or LF that is not folding, and
other control characters outside comments, so nothing parsed here can carry
a line break into a new field.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import quopri
import re
from email.header import Header

WSP = " \t"
DIGITS = "0123456789"
SPECIALS = '()<>[]:;@\\,."'
TSPECIALS = '()<>@,;:\\"/[]?='          # RFC 2045 s5.1: what ends a token
_FOLD = re.compile(r"\r?\n(?=[ \t])")
# C0 but HTAB, DEL, C1, and the Unicode line and paragraph separators
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_ENCODED_WORD = re.compile(r"=\?([^?*\s]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=\Z")


class HeaderSyntaxError(ValueError):
    """A field value that does not follow its RFC grammar."""


@dataclasses.dataclass(frozen=True)
class Mailbox:
    display_name: str       # decoded; never holds a control character
    local: str              # the internal form: quoting and quoted-pairs removed
    domain: str             # lower-cased; a domain literal keeps its brackets

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def addr_spec(self) -> str:
        """The address as written in a new field: the local part quoted if it must be."""
        dot_atom = all(atom and all(map(_is_atext, atom)) for atom in self.local.split("."))
        local = self.local if dot_atom else quote(self.local)
        return f"{local}@{self.domain}"

    @property
    def has_domain_literal(self) -> bool:
        return self.domain.startswith("[")


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_mailbox(display_name: str, addr_spec: str) -> str:
    """A name-addr for a new field: the display name as atoms, a quoted
    string or, if it is not ASCII, RFC 2047 encoded words."""
    name = _CONTROL.sub(" ", display_name).strip()
    if not name:
        return f"<{addr_spec}>"
    if not name.isascii():
        name = Header(name, "utf-8").encode()
    elif not all(_is_atext(ch) or ch == " " for ch in name):
        name = quote(name)
    return f"{name} <{addr_spec}>"


def parse_address_list(value: str) -> list[Mailbox]:
    """The mailboxes of an address-list (To, Cc, Delivered-To...), groups
    flattened; [] for a value with none. Raises HeaderSyntaxError."""
    return _Parser(value).address_list(groups=True)


def parse_mailbox_list(value: str) -> list[Mailbox]:
    """The mailboxes of a mailbox-list (From): no groups. Raises HeaderSyntaxError."""
    return _Parser(value).address_list(groups=False)


def authserv_id(value: str) -> str:
    """The authserv-id of an Authentication-Results value (RFC 8601 s2.2:
    [CFWS] authserv-id [CFWS authres-version] then ';'), unquoted.
    Raises HeaderSyntaxError."""
    text = _unfolded(value)
    pos, _ = _skip_cfws(text, 0)
    if pos < len(text) and text[pos] == '"':
        ident, pos = _quoted(text, pos)
    else:
        start = pos
        while pos < len(text) and _is_token_char(text[pos]):
            pos += 1
        ident = text[start:pos]
    if not ident:
        raise HeaderSyntaxError("no authserv-id")
    pos, space = _skip_cfws(text, pos)
    if space and pos < len(text) and text[pos] in DIGITS:    # authres-version
        while pos < len(text) and text[pos] in DIGITS:
            pos += 1
        pos, _ = _skip_cfws(text, pos)
    if pos >= len(text) or text[pos] != ";":
        raise HeaderSyntaxError("the authserv-id is not followed by ';'")
    return ident


def words(value: str) -> list[str]:
    """A value split at whitespace and comments, quoted strings unquoted:
    `5.1.1 (no such user)` -> ['5.1.1']. Raises HeaderSyntaxError."""
    text = _unfolded(value)
    found: list[str] = []
    pos, current = 0, ""
    while pos < len(text):
        ch = text[pos]
        if ch in WSP or ch == "(":
            pos, _ = _skip_cfws(text, pos)
            if current:
                found.append(current)
            current = ""
        elif ch == '"':
            quoted, pos = _quoted(text, pos)
            current += quoted
        elif _CONTROL.match(ch):
            raise HeaderSyntaxError(f"control character {ch!r}")
        else:
            current += ch
            pos += 1
    return found + [current] if current else found


# -- lexical level --------------------------------------------------------------

def _unfolded(value: str) -> str:
    """The value with folding removed; a CR, LF or NUL left over is an error."""
    text = _FOLD.sub("", value)
    bad = re.search(r"[\r\n\x00]", text)
    if bad:
        raise HeaderSyntaxError(f"{bad.group()!r} outside folding")
    return text


def _is_atext(ch: str) -> bool:
    return ch > " " and ch not in SPECIALS and not _CONTROL.match(ch)


def _is_token_char(ch: str) -> bool:
    return " " < ch < "\x7f" and ch not in TSPECIALS


def _skip_cfws(text: str, pos: int, comments: list[str] | None = None) -> tuple[int, bool]:
    """Past any whitespace and comments; whether there were any."""
    start = pos
    while pos < len(text):
        if text[pos] in WSP:
            pos += 1
        elif text[pos] == "(":
            content, pos = _comment(text, pos)
            if comments is not None:
                comments.append(content)
        else:
            break
    return pos, pos > start


def _comment(text: str, pos: int) -> tuple[str, int]:
    """A comment starting at text[pos] == '(': its content (nested comments
    kept, quoted-pairs resolved) and the position after it."""
    depth, pos = 1, pos + 1
    content: list[str] = []
    while pos < len(text):
        ch = text[pos]
        if ch == "\\" and pos + 1 < len(text):
            content.append(text[pos + 1])
            pos += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return "".join(content), pos + 1
        content.append(ch)
        pos += 1
    raise HeaderSyntaxError("unterminated comment")


def _quoted(text: str, pos: int) -> tuple[str, int]:
    """A quoted-string starting at text[pos] == '"': its content and the
    position after it."""
    pos += 1
    content: list[str] = []
    while pos < len(text):
        ch = text[pos]
        if ch == "\\" and pos + 1 < len(text):
            ch = text[pos + 1]
            pos += 1
        elif ch == '"':
            return "".join(content), pos + 1
        if _CONTROL.match(ch):
            raise HeaderSyntaxError(f"control character {ch!r} in a quoted string")
        content.append(ch)
        pos += 1
    raise HeaderSyntaxError("unterminated quoted string")


def _literal(text: str, pos: int) -> tuple[str, int]:
    """A domain-literal starting at text[pos] == '[': '[' dtext ']' with
    whitespace removed, and the position after it."""
    pos += 1
    content: list[str] = []
    while pos < len(text):
        ch = text[pos]
        if ch == "\\" and pos + 1 < len(text):      # obs-dtext
            ch = text[pos + 1]
            pos += 1
        elif ch == "]":
            return "[" + "".join(content) + "]", pos + 1
        elif ch == "[":
            raise HeaderSyntaxError("'[' inside a domain literal")
        elif ch in WSP:
            pos += 1
            continue
        if _CONTROL.match(ch):
            raise HeaderSyntaxError(f"control character {ch!r} in a domain literal")
        content.append(ch)
        pos += 1
    raise HeaderSyntaxError("unterminated domain literal")


@dataclasses.dataclass(frozen=True)
class _Token:
    kind: str                     # atom | quoted | literal | special | end
    text: str
    space_before: bool = False
    comments: tuple[str, ...] = ()   # the comments just before it


def _tokens(value: str) -> list[_Token]:
    text = _unfolded(value)
    tokens = []
    pos = 0
    while True:
        comments: list[str] = []
        pos, space = _skip_cfws(text, pos, comments)
        if pos >= len(text):
            tokens.append(_Token("end", "", space, tuple(comments)))
            return tokens
        ch = text[pos]
        if ch == '"':
            content, pos = _quoted(text, pos)
            tokens.append(_Token("quoted", content, space, tuple(comments)))
        elif ch == "[":
            content, pos = _literal(text, pos)
            tokens.append(_Token("literal", content, space, tuple(comments)))
        elif ch in "<>:;@,.":
            tokens.append(_Token("special", ch, space, tuple(comments)))
            pos += 1
        elif _is_atext(ch):
            start = pos
            while pos < len(text) and _is_atext(text[pos]):
                pos += 1
            tokens.append(_Token("atom", text[start:pos], space, tuple(comments)))
        else:
            raise HeaderSyntaxError(f"unexpected {ch!r}")


# -- RFC 5322 s3.4 address lists ------------------------------------------------

class _Parser:
    def __init__(self, value: str):
        self.tokens = _tokens(value)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        if token.kind != "end":
            self.i += 1
        return token

    def at(self, special: str) -> bool:
        token = self.peek()
        return token.kind == "special" and token.text == special

    def expect(self, special: str) -> None:
        if not self.at(special):
            found = self.peek().text or "the end"
            raise HeaderSyntaxError(f"expected {special!r}, found {found!r}")
        self.take()

    def address_list(self, groups: bool) -> list[Mailbox]:
        found: list[Mailbox] = []
        while self.peek().kind != "end":
            if self.at(","):           # obs-addr-list: empty elements
                self.take()
                continue
            found += self.address(groups)
            if self.peek().kind != "end":
                self.expect(",")
        return found

    def address(self, groups: bool) -> list[Mailbox]:
        phrase = self.phrase()
        if self.at("<"):
            return [self.angle_addr(_display_name(phrase))]
        if self.at("@"):
            mailbox = self.addr_spec(phrase)
            if self.peek().comments:
                # `alice@x.test (Alice Example)`: the old way to name the sender
                name = _clean(" ".join(self.peek().comments))
                mailbox = dataclasses.replace(mailbox, display_name=name)
            return [mailbox]
        if self.at(":") and phrase:
            if not groups:
                raise HeaderSyntaxError("a group where only mailboxes may be")
            return self.group()
        found = self.peek().text or "the end"
        raise HeaderSyntaxError(f"no address at {found!r}")

    def phrase(self) -> list[_Token]:
        """Words and (obs-phrase, obs-local-part) dots, as they come."""
        found: list[_Token] = []
        while self.peek().kind in ("atom", "quoted") or (self.at(".") and found):
            found.append(self.take())
        return found

    def group(self) -> list[Mailbox]:
        self.expect(":")
        members: list[Mailbox] = []
        while not self.at(";"):
            if self.peek().kind == "end":
                raise HeaderSyntaxError("a group not ended by ';'")
            if self.at(","):
                self.take()
                continue
            members += self.address(groups=False)
            if not self.at(";"):
                self.expect(",")
        self.take()
        return members

    def angle_addr(self, display_name: str) -> Mailbox:
        self.expect("<")
        if self.at("@") or self.at(","):    # obs-route, ignored (RFC 5322 s4.4)
            while self.at("@") or self.at(","):
                if self.take().text == "@":
                    self.domain()
            self.expect(":")
        mailbox = self.addr_spec(self.phrase(), display_name)
        self.expect(">")
        return mailbox

    def addr_spec(self, local_words: list[_Token], display_name: str = "") -> Mailbox:
        local = _local_part(local_words)
        self.expect("@")
        return Mailbox(display_name, local, self.domain())

    def domain(self) -> str:
        if self.peek().kind == "literal":
            return self.take().text.lower()
        labels = [self.atom()]
        while self.at("."):
            self.take()
            labels.append(self.atom())
        return ".".join(labels).lower()

    def atom(self) -> str:
        token = self.take()
        if token.kind != "atom":
            raise HeaderSyntaxError(f"expected a domain label, found {token.text or 'the end'!r}")
        return token.text


def _local_part(tokens: list[_Token]) -> str:
    """word *("." word): dot-atom, quoted-string or obs-local-part."""
    if not tokens:
        raise HeaderSyntaxError("empty local part")
    for index, token in enumerate(tokens):
        is_dot = token.kind == "special"
        if is_dot != (index % 2 == 1):
            raise HeaderSyntaxError("a local part with a misplaced '.' or a space")
    if tokens[-1].kind == "special":
        raise HeaderSyntaxError("a local part ending in '.'")
    return "".join(token.text for token in tokens)


# -- display names and RFC 2047 -------------------------------------------------

def _display_name(tokens: list[_Token]) -> str:
    parts: list[str] = []
    previous_encoded = False
    for token in tokens:
        text, encoded = _decoded_word(token)
        # s6.2: the space between two adjacent encoded words is not shown
        if parts and token.space_before and not (encoded and previous_encoded):
            parts.append(" ")
        parts.append(text)
        previous_encoded = encoded
    return _clean("".join(parts))


def _decoded_word(token: _Token) -> tuple[str, bool]:
    """A display-name word, decoded if it is an encoded word (RFC 2047 s5(3));
    also a quoted string made only of encoded words, which many mailers
    write although s5 forbids it."""
    if token.kind == "atom":
        decoded = _decode_encoded_word(token.text)
        return (decoded, True) if decoded is not None else (token.text, False)
    if token.kind == "quoted":
        pieces = [_decode_encoded_word(w) for w in token.text.split()]
        if pieces and all(p is not None for p in pieces):
            return "".join(p for p in pieces if p is not None), False
    return token.text, False


def _decode_encoded_word(word: str) -> str | None:
    match = _ENCODED_WORD.match(word)
    if not match:
        return None
    charset, encoding, text = match.groups()
    try:
        if encoding in "bB":
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        else:
            raw = quopri.decodestring(text.replace("_", " ").encode("ascii"), header=False)
        return raw.decode(charset, "replace")
    except (LookupError, binascii.Error, UnicodeEncodeError, ValueError):
        return None     # an unknown charset or broken encoding: shown as it came


def _clean(text: str) -> str:
    """Display text: control characters (a decoded CR LF, say) become spaces."""
    return " ".join(_CONTROL.sub(" ", text).split())
