//! The built-in held-out sample: a few paragraphs written for pupil, so no model was trained
//! on them, mixing narrative, explanation, numbers and a little dialogue.

/// Prose to score models on when no text is given (about 700 tokens with Gemma's vocabulary).
pub const HELD_OUT: &str = "\
The lighthouse keeper on Marrow Point kept two logbooks. The first was the official one, \
ruled in blue, where he wrote the hour the lamp was lit, the hour it was put out, the \
direction of the wind and the number of ships that passed. The second was a cheap exercise \
book with a cracked spine, and in it he wrote everything the first book had no column for: \
the colour of the sea before a storm, the gulls that stole his bread, the night a fishing \
boat signalled him with a torch for almost an hour and then simply went home.

When the coastal authority replaced the lamp with an automatic beacon, an inspector came to \
collect the official logbook. She read a few pages standing in the doorway, thanked him, and \
asked whether there was anything else she should take. He hesitated, then handed her the \
exercise book as well. \"It is not accurate,\" he said. \"But it is true.\" She laughed, and \
promised to read it on the train.

A compiler is a program that translates a program. That sounds circular, and in a sense it \
is: the first compilers had to be written by hand in machine code, and every compiler since \
has been built with the help of an older one. The process usually has three stages. The \
front end reads the source text, checks that it follows the rules of the language and builds \
a tree that describes its structure. The middle end rewrites that tree, or a simpler form of \
it, into something faster that means the same thing. The back end finally chooses real \
instructions for a real processor, deciding which values live in registers and which must \
wait in memory.

None of these stages is ever finished. A new processor arrives with wider vector units, and \
the back end learns to use them. A language gains a feature, and the front end must check \
it. Someone finds that a clever rewrite in the middle end is wrong for one input in a \
million, and the rewrite is made a little less clever. Good compilers are less like \
buildings and more like gardens.

On Tuesday the bakery on Fenwick Street sold 214 loaves, 96 croissants and 37 slices of \
lemon cake, which was 12 more than on Monday. The owner, who had started the business with \
a borrowed oven and a loan of four thousand pounds, put the difference down to the weather. \
Her accountant put it down to the new sign. Her daughter, who had painted the sign, said \
nothing at all, but she smiled every time someone mentioned it.

\"Do you think it will rain tomorrow?\" asked the boy.
\"The radio says so,\" said his grandmother, \"but the radio has been wrong before.\"
\"Then how do you know?\"
\"I look at the hills. If I can see the farm on the far side, the air is too clear, and rain \
is coming. If I cannot see it, the weather will hold.\"
The boy looked. He could see the farm, and the tractor beside it, and even the washing on \
the line. He went to find his coat.
";
