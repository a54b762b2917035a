/** Verification SOP class (PS3.4 Annex A): C-ECHO. */
import type { DimseMessage } from './association.ts';
import { CommandField, Status } from './command.ts';
import type { ServiceContext } from './server.ts';

export async function handleEcho(ctx: ServiceContext, message: DimseMessage): Promise<void> {
  await ctx.assoc.send(message.presentationContextId, {
    CommandField: CommandField.CEchoRSP,
    MessageIDBeingRespondedTo: message.command.MessageID,
    AffectedSOPClassUID: message.command.AffectedSOPClassUID,
    Status: Status.Success,
    hasDataset: false,
  });
}
