# Slipway's jq prelude: the usual jq filters, defined on top of jaq's native
# ones. A program gets only the definitions it uses (see `Prelude::for_expression`).
# Each definition starts with `def` at the start of a line; continuation lines
# are indented. A definition may use only those above it.
# No time zones, regular expressions or I/O, so components stay free of imports
# a plugin may not have.

def empty: {}[] as $x | .;
def null: [][0];
def true: 0 == 0;
def false: 0 != 0;
def not: if . then false else true end;
def error: error_empty as $x | .;
def error(message): (message | error_empty) as $x | .;
def select(condition): if condition then . else empty end;
def tostring: "\(.)";

def isboolean: . == true or . == false;
def isnumber: . > true and . < "";
def isstring: . >= "" and . < [];
def isarray: . >= [] and . < {};
def isobject: . >= {};
def type:
  if . == null then "null"
  elif isboolean then "boolean"
  elif isnumber then "number"
  elif isstring then "string"
  elif isarray then "array"
  else "object" end;

def values: select(. != null);
def nulls: select(. == null);
def booleans: select(isboolean);
def numbers: select(isnumber);
def strings: select(isstring);
def arrays: select(isarray);
def objects: select(isobject);
def iterables: select(. >= []);
def scalars: select(. < []);

def abs: if . < 0 then - . end;
def range(upto): range(0; upto; 1);
def range(from; upto): range(from; upto; 1);
def recurse(step): def rec: ., (step | rec); rec;
def recurse: recurse(.[]?);
def repeat(step): def rec: step, rec; rec;
def while(condition; update): def rec: if condition then ., (update | rec) else empty end; rec;
def until(condition; update): def rec: if condition then . else update | rec end; rec;

def map(f): [.[] | f];
def map_values(f): .[] |= f;
def add(f): reduce f as $x (null; . + $x);
def add: add(.[]);
def first: .[0];
def last: .[-1];
def nth($n): .[$n];
def min_by(f): reduce min_by_or_empty(f) as $x (null; $x);
def max_by(f): reduce max_by_or_empty(f) as $x (null; $x);
def min: min_by(.);
def max: max_by(.);
def unique_by(f): [group_by(f)[] | .[0]];
def unique: unique_by(.);
def flatten: [recurse(arrays[]) | select(isarray | not)];
def join($separator): reduce (.[] | tostring) as $s (null; if . == null then $s else . + $separator + $s end) // "";
def isempty(g): first((g | false), true);
def any(g; condition): isempty(g | condition or empty) | not;
def all(g; condition): isempty(g | condition and empty);
def any(condition): any(.[]; condition);
def all(condition): all(.[]; condition);
def any: any(.);
def all: all(.);
def index($x): indices($x)[0];
def rindex($x): indices($x)[-1];
def in(xs): . as $x | xs | has($x);
def inside(xs): . as $x | xs | contains($x);

def keys: keys_unsorted | sort;
def to_entries: [key_values[] as [$k, $v] | {key: $k, value: $v}];
def from_entries: reduce .[] as $e ({}; . + {($e.key // $e.name | tostring): ($e.value)});
def with_entries(f): to_entries | map(f) | from_entries;
def getpath($path): reduce $path[] as $p (.; .[$p]);
def del(f): f |= empty;
def paths: skip(1; path(..));
def walk(f): .. |= f;

def split($separator): . / $separator;
def tonumber: if isnumber then . else fromjson end;
def @text: tostring;
def @json: tojson;
