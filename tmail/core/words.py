"""Words for readable random local parts (short, common, unambiguous)."""
WORDS = tuple("""
acorn amber anchor apple arrow aspen autumn badge bamboo basil beacon berry birch
bison blossom bloom breeze brook bubble cactus canyon carbon cedar cherry cider
cliff clover cobalt comet coral cotton crane crystal cypress daisy dawn delta
desert dolphin dune eagle echo ember falcon fern fiddle finch fjord flame flint
forest fossil fox frost galaxy garnet geyser ginger glacier glade granite grape
gravel harbor hazel heron hickory honey horizon indigo iris island ivory jade
jasper juniper kelp kestrel kiwi lagoon larch lark lava lemon lichen lilac lime
linen lotus lunar lynx magnet maple marble meadow mesa meteor mint mist moss
nectar nickel noble nutmeg oasis ocean olive onyx opal orbit orchid otter oxide
panda papaya pebble pepper pine planet plum polar poppy prairie prism quartz
quill rain raven reef ridge river robin rocket rose ruby saffron sage salmon
sand sapphire satin shadow shell sierra silver slate sparrow spruce star stone
storm summit sunset swift tango thistle thunder tide tiger timber topaz trail
tulip tundra umber valley velvet violet walnut willow wind winter wren yarrow
zephyr zinc
""".split())
