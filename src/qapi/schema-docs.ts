// Matching doc blocks to what they document (QEMU's connect_doc and QAPIDoc.check): every
// member, enum value, branch and feature of a documented definition must be described
// (members may be exempted by pragma `documentation-exceptions`), and every description must
// name something that exists. Member descriptions are copied onto the entities for the model.

import { QapiSemError } from './errors';
import { QapiDoc } from './doc';
import { Pragmas } from './model';
import { QapiSourceInfo } from './source';
import { Ent, EnumValueEnt, FeatureEnt, MemberEnt, isImplicit } from './schema-entities';

export class DocConnector {
  /** Descriptions that found their member or feature. */
  private readonly connected = new Set<object>();

  constructor(private readonly pragmas: Pragmas) {}

  /** Connects `e`'s doc (or, for implicit types, the doc of their owner). Call after `e` is
   *  checked: bases and argument types must be resolved. */
  connect(e: Ent, doc: QapiDoc | undefined = e.doc): void {
    if (!doc) return;
    for (const f of e.features) this.connectFeature(doc, f, e.info!);
    switch (e.kind) {
      case 'enum':
        for (const v of e.values) {
          v.doc = this.connectMember(doc, v, e.info!);
          for (const f of v.features) this.connectFeature(doc, f, e.info!);
        }
        return;
      case 'object':
        if (e.base && isImplicit(e.base)) this.connect(e.base, doc);
        for (const m of e.local) {
          m.doc = this.connectMember(doc, m, m.info);
          for (const f of m.features) this.connectFeature(doc, f, m.info);
        }
        return;
      case 'alternate':
        for (const v of e.variants) v.doc = this.connectMember(doc, v, v.info);
        return;
      case 'command':
      case 'event':
        if (e.arg && isImplicit(e.arg)) this.connect(e.arg, doc);
        return;
      default:
        return;
    }
  }

  private connectMember(doc: QapiDoc, m: MemberEnt | EnumValueEnt, info: QapiSourceInfo): string | undefined {
    const desc = doc.args.get(m.name);
    if (!desc) {
      if (doc.symbol !== undefined && this.pragmas.documentationExceptions.includes(doc.symbol)) return undefined;
      throw new QapiSemError(info, `${m.role} '${m.name}' lacks documentation`);
    }
    this.connected.add(desc);
    return desc.text;
  }

  private connectFeature(doc: QapiDoc, f: FeatureEnt, info: QapiSourceInfo): void {
    const desc = doc.features.get(f.name);
    if (!desc) throw new QapiSemError(info, `feature '${f.name}' lacks documentation`);
    this.connected.add(desc);
  }

  /** After every entity is connected: each `@name:` must have found its member or feature. */
  checkAllUsed(doc: QapiDoc): void {
    this.checkUsed(doc.args, 'member');
    this.checkUsed(doc.features, 'feature');
  }

  private checkUsed(descs: QapiDoc['args'], what: string): void {
    const bogus = [...descs].filter(([, d]) => !this.connected.has(d));
    if (bogus.length === 0) return;
    const names = bogus.map(([n]) => n).join("', '");
    const plural = bogus.length > 1;
    throw new QapiSemError(bogus[0][1].info, `documented ${what}${plural ? 's' : ''} '${names}' ${plural ? 'do' : 'does'} not exist`);
  }
}
