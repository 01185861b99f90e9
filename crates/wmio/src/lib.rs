//! The WMI encoding ([MS-WMIO]): how CIM classes and instances travel in
//! MS-WMI, as an `EncodingUnit` inside an IWbemClassObject's custom
//! OBJREF, and as the object blocks of an ObjectArray.
//!
//! - The data model here: [`ClassDef`] (name, derivation, qualifiers,
//!   properties with their defaults, methods with their parameter
//!   classes), [`Instance`] (a class and a value per property) and
//!   [`Object`] (a class with its parent, or an instance, optionally
//!   decorated with its server and namespace).
//! - [`encode`]: objects to bytes, heaps and dictionary references laid
//!   out as Windows and the clients that read it (Impacket) expect.
//! - [`decode`]: bytes to objects, every offset and length checked; what
//!   clients send to PutInstance and ExecMethod.
//! - [`object_array`]: several objects in one buffer ([MS-WMI] 2.2.14),
//!   each class sent once, as the smart enumerator sends them.
//! - [`context`]: IWbemContext's marshalled named values ([MS-WMI]
//!   2.2.13), what a partial PutInstance names its properties in.
//!
//! The crate knows nothing of DCOM or of IIS: it is the codec alone.

pub mod context;
pub mod decode;
pub mod encode;
/// What the fuzz target and the corpus replay call; not in the product.
#[cfg(feature = "fuzz-checks")]
pub mod fuzz_checks;
pub mod object_array;

pub use decode::{decode_object_block, decode_unit, DecodeError};
pub use encode::{encode_class_part, encode_instance_no_class, encode_object_block, encode_unit};
pub use object_array::{ObjectArrayDecoder, ObjectArrayEncoder};

/// The EncodingUnit's signature (2.2.77).
pub const SIGNATURE: u32 = 0x1234_5678;

/// ObjectFlags (2.2.6).
pub mod object_flags {
    pub const CLASS: u8 = 0x01;
    pub const INSTANCE: u8 = 0x02;
    pub const DECORATED: u8 = 0x04;
    pub const PROTOTYPE: u8 = 0x10;
    pub const KEYS_MISSING: u8 = 0x40;
}

/// Qualifier flavors (2.2.62).
pub mod flavor {
    pub const PROPAGATE_TO_INSTANCE: u8 = 0x01;
    pub const PROPAGATE_TO_DERIVED_CLASS: u8 = 0x02;
    pub const NOT_OVERRIDABLE: u8 = 0x10;
    pub const ORIGIN_PROPAGATED: u8 = 0x20;
    pub const ORIGIN_SYSTEM: u8 = 0x40;
    pub const AMENDED: u8 = 0x80;
}

/// The strings a HeapStringRef may name by ordinal with its top bit set
/// (DictionaryReference, 2.2.80).
pub const DICTIONARY: [&str; 11] = [
    "'", "key", "", "read", "write", "volatile", "provider", "dynamic", "cimwin32", "DWORD",
    "CIMTYPE",
];

/// A CIM type (2.2.82): a base type, with 0x2000 for an array of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CimType(pub u16);

impl CimType {
    pub const SINT8: CimType = CimType(16);
    pub const UINT8: CimType = CimType(17);
    pub const SINT16: CimType = CimType(2);
    pub const UINT16: CimType = CimType(18);
    pub const SINT32: CimType = CimType(3);
    pub const UINT32: CimType = CimType(19);
    pub const SINT64: CimType = CimType(20);
    pub const UINT64: CimType = CimType(21);
    pub const REAL32: CimType = CimType(4);
    pub const REAL64: CimType = CimType(5);
    pub const BOOLEAN: CimType = CimType(11);
    pub const STRING: CimType = CimType(8);
    pub const DATETIME: CimType = CimType(101);
    pub const REFERENCE: CimType = CimType(102);
    pub const CHAR16: CimType = CimType(103);
    pub const OBJECT: CimType = CimType(13);
    pub const ARRAY_FLAG: u16 = 0x2000;

    pub fn is_array(self) -> bool {
        self.0 & Self::ARRAY_FLAG != 0
    }

    /// The element type of an array, or the type itself.
    pub fn base(self) -> CimType {
        CimType(self.0 & !Self::ARRAY_FLAG)
    }

    pub fn array_of(base: CimType) -> CimType {
        CimType(base.0 | Self::ARRAY_FLAG)
    }

    /// Whether the low 16 bits name a CIM type this encoding knows.
    pub fn is_known(self) -> bool {
        self.0 & !(Self::ARRAY_FLAG) == self.base().0
            && matches!(
                self.base().0,
                16 | 17 | 2 | 18 | 3 | 19 | 20 | 21 | 4 | 5 | 11 | 8 | 101 | 102 | 103 | 13
            )
    }

    /// The octets an EncodedValue of this type takes inline (2.2.71):
    /// numbers by their size, everything on the heap by a HeapRef.
    pub fn inline_size(self) -> usize {
        if self.is_array() {
            return 4;
        }
        match self.0 {
            16 | 17 => 1,
            2 | 18 | 11 | 103 => 2,
            3 | 19 | 4 => 4,
            20 | 21 | 5 => 8,
            _ => 4,
        }
    }

    /// The type's name as the CIMTYPE qualifier spells it (2.3.1, 2.3.2),
    /// without the class of an object or reference.
    pub fn name(self) -> &'static str {
        match self.base().0 {
            16 => "sint8",
            17 => "uint8",
            2 => "sint16",
            18 => "uint16",
            3 => "sint32",
            19 => "uint32",
            20 => "sint64",
            21 => "uint64",
            4 => "real32",
            5 => "real64",
            11 => "boolean",
            8 => "string",
            101 => "datetime",
            102 => "ref",
            103 => "char16",
            13 => "object",
            _ => "unknown",
        }
    }
}

/// A value (EncodedValue, 2.2.71).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Sint8(i8),
    Uint8(u8),
    Sint16(i16),
    Uint16(u16),
    Sint32(i32),
    Uint32(u32),
    Sint64(i64),
    Uint64(u64),
    Real32(f32),
    Real64(f64),
    Boolean(bool),
    String(String),
    /// A CIM datetime (DMTF DSP0004 2.2.1), as its string.
    DateTime(String),
    /// An object path.
    Reference(String),
    Char16(u16),
    /// An embedded object (an instance, usually).
    Object(Box<Object>),
    /// An array of the given element type.
    Array(CimType, Vec<Value>),
}

impl Value {
    pub fn cim_type(&self) -> CimType {
        match self {
            Value::Sint8(_) => CimType::SINT8,
            Value::Uint8(_) => CimType::UINT8,
            Value::Sint16(_) => CimType::SINT16,
            Value::Uint16(_) => CimType::UINT16,
            Value::Sint32(_) => CimType::SINT32,
            Value::Uint32(_) => CimType::UINT32,
            Value::Sint64(_) => CimType::SINT64,
            Value::Uint64(_) => CimType::UINT64,
            Value::Real32(_) => CimType::REAL32,
            Value::Real64(_) => CimType::REAL64,
            Value::Boolean(_) => CimType::BOOLEAN,
            Value::String(_) => CimType::STRING,
            Value::DateTime(_) => CimType::DATETIME,
            Value::Reference(_) => CimType::REFERENCE,
            Value::Char16(_) => CimType::CHAR16,
            Value::Object(_) => CimType::OBJECT,
            Value::Array(base, _) => CimType::array_of(*base),
        }
    }

    /// The text of a string-like value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::DateTime(s) | Value::Reference(s) => Some(s),
            _ => None,
        }
    }
}

/// A qualifier (2.2.60): its type is its value's.
#[derive(Clone, Debug, PartialEq)]
pub struct Qualifier {
    pub name: String,
    pub flavor: u8,
    pub value: Value,
}

impl Qualifier {
    pub fn new(name: &str, flavor: u8, value: Value) -> Qualifier {
        Qualifier {
            name: name.to_string(),
            flavor,
            value,
        }
    }
}

/// A property of a class (PropertyInfo, 2.2.30), in declaration order.
#[derive(Clone, Debug, PartialEq)]
pub struct Property {
    pub name: String,
    pub cim_type: CimType,
    /// Defined in a superclass (Inherited, 2.2.32).
    pub inherited: bool,
    /// Which class of the derivation list defines it (ClassOfOrigin,
    /// 2.2.35): the list's length for the class itself.
    pub origin: u32,
    pub qualifiers: Vec<Qualifier>,
    /// The class's default; None is NULL.
    pub default: Option<Value>,
}

/// A method (MethodDescription, 2.2.41), its parameters as the
/// `__PARAMETERS` classes of 2.3.3.
#[derive(Clone, Debug, PartialEq)]
pub struct Method {
    pub name: String,
    pub inherited: bool,
    pub origin: u32,
    pub qualifiers: Vec<Qualifier>,
    pub input: Option<ClassDef>,
    pub output: Option<ClassDef>,
}

/// A class (ClassAndMethodsPart, 2.2.14).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ClassDef {
    /// None for the empty parent of a class without a superclass.
    pub name: Option<String>,
    /// The superclasses, the immediate one first (2.2.17).
    pub derivation: Vec<String>,
    pub qualifiers: Vec<Qualifier>,
    pub properties: Vec<Property>,
    pub methods: Vec<Method>,
}

impl ClassDef {
    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

/// An instance (InstanceType, 2.2.53): one slot per property of its
/// class, in the class's declaration order. Instances of one class share
/// it (an ObjectArray sends a shared class once).
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    pub class: std::sync::Arc<ClassDef>,
    pub values: Vec<Slot>,
    pub qualifiers: Vec<Qualifier>,
}

/// What an instance holds for one property (the NdTable bits, 2.2.27).
#[derive(Clone, Debug, PartialEq)]
pub enum Slot {
    Value(Value),
    Null,
    /// The class's default.
    Default,
}

impl Instance {
    /// The value of a property, the class's default where the instance
    /// has none of its own.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let i = self
            .class
            .properties
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(name))?;
        match self.values.get(i)? {
            Slot::Value(v) => Some(v),
            Slot::Null => None,
            Slot::Default => self.class.properties[i].default.as_ref(),
        }
    }
}

/// What an ObjectBlock carries (Encoding, 2.2.10).
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// A class and its parent (ClassType, 2.2.11); the parent is empty
    /// for a class without a superclass.
    Class {
        parent: ClassDef,
        current: ClassDef,
    },
    Instance(Instance),
}

/// An object (ObjectBlock, 2.2.5).
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// The server and namespace it comes from (Decoration, 2.2.7).
    pub decoration: Option<(String, String)>,
    /// ObjectFlags beyond class/instance/decorated (prototype, 2.2.4.1).
    pub extra_flags: u8,
    pub body: Body,
}

impl Object {
    pub fn class_name(&self) -> &str {
        match &self.body {
            Body::Class { current, .. } => current.name(),
            Body::Instance(i) => i.class.name(),
        }
    }
}
