# Slipway's jq prelude: the common filters on top of jaq's native ones. No
# time zones, regular expressions or I/O, so components stay free of imports
# a plugin may not have.

def null: [][0];

# Types
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

# Selection
def values: select(. != null);
def nulls: select(. == null);
def booleans: select(isboolean);
def numbers: select(isnumber);
def strings: select(isstring);
def arrays: select(isarray);
def objects: select(isobject);
def iterables: select(. >= []);
def scalars: select(. < []);

# Numbers
def abs: if . < 0 then - . end;

# Collections
def add(f): reduce f as $x (null; . + $x);
def add: add(.[]);
def min_by(f): reduce min_by_or_empty(f) as $x (null; $x);
def max_by(f): reduce max_by_or_empty(f) as $x (null; $x);
def min: min_by(.);
def max: max_by(.);
def unique_by(f): [group_by(f)[] | .[0]];
def unique: unique_by(.);
def keys: keys_unsorted | sort;
def flatten: [recurse(arrays[]) | select(isarray | not)];

# Strings
def split($separator): . / $separator;
def @text: tostring;
